//! Argument parsing and the three subcommands.

mod compile;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use edgecc::Error;
use edgecc::pipeline::{Options, parse_input_shape};

/// Writes to stdout like `print!`, but a reader that went away (`edgecc ... | head`) ends
/// the program quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            return Err(edgecc::Error::io("standard output", e));
        }
    }};
}
pub(crate) use out;

#[derive(Parser)]
#[command(
    name = "edgecc",
    version,
    about = "Ahead-of-time compiler from ONNX to native code for edge devices"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

/// Options every subcommand that compiles shares.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Shape for an input with symbolic dims, e.g. `x=1x3x32x32`. Repeatable.
    #[arg(long = "input-shape", value_name = "NAME=DIMS", value_parser = parse_input_shape)]
    pub input_shapes: Vec<(String, Vec<usize>)>,
    /// Bind an input to a value at compile time, e.g. `axes=axes.npy` (.npy or .pb): it
    /// becomes a constant and is no longer an input of the compiled model. Repeatable.
    #[arg(long = "freeze", value_name = "NAME=FILE")]
    pub freeze: Vec<String>,
    /// Print the graph after this pass (`all` for every pass) to stderr. Repeatable.
    #[arg(long = "print-after", value_name = "PASS")]
    pub print_after: Vec<String>,
    /// Leave this pass (every run of it) out of the pipeline. Repeatable.
    #[arg(long = "disable-pass", value_name = "PASS")]
    pub disable_passes: Vec<String>,
    /// Fail if a quantized model still computes any node in float (the list the compile
    /// report prints), instead of compiling it with those nodes in float.
    #[arg(long = "require-int8")]
    pub require_int8: bool,
}

impl ModelArgs {
    pub fn options(&self, name: String) -> Result<Options, Error> {
        let mut frozen_inputs = std::collections::BTreeMap::new();
        for f in &self.freeze {
            let Some((n, file)) = f.split_once('=') else {
                return Err(Error::Input(format!("--freeze {f}: expected NAME=FILE")));
            };
            frozen_inputs.insert(
                n.to_string(),
                edgecc::io::read_tensor(std::path::Path::new(file))?,
            );
        }
        let opts = Options {
            input_shapes: self.input_shapes.iter().cloned().collect(),
            frozen_inputs,
            name,
            print_after: self.print_after.clone(),
            disable_passes: self.disable_passes.clone(),
            require_int8: self.require_int8,
        };
        opts.check_pass_names()?;
        Ok(opts)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// ELF relocatable object (+ model.h and manifest).
    Obj,
    /// Shared object (+ model.h and manifest).
    So,
    /// Cranelift IR and machine code listing of every kernel.
    Asm,
    /// The graph after passes, in edgecc's text IR.
    Ir,
    /// Only the C header.
    Header,
    /// One freestanding C file (+ model.h and manifest): the hexagon targets' artifact.
    C,
}

#[derive(Subcommand)]
enum Command {
    /// Inputs, outputs, op histogram, parameters, unsupported ops, arena size.
    Inspect {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Compile a model to an object file, shared object, C file, listing, IR or header.
    Compile {
        #[command(flatten)]
        model: ModelArgs,
        /// `x86_64`, `aarch64-neon`, a target triple (e.g. `aarch64-unknown-none`), or
        /// `hexagon` (= `hexagon-v66`), `hexagon-v67`, `-v68`, `-v69`, `-v71`, `-v73`.
        #[arg(long, default_value = "aarch64-neon")]
        target: String,
        /// Hexagon targets only: `128` (128-byte HVX, the default) or `off` (plain C).
        #[arg(long, value_name = "128|off")]
        hvx: Option<String>,
        /// What to write; `obj` by default, `c` for hexagon targets.
        #[arg(long, value_enum)]
        emit: Option<Emit>,
        /// Output file; the header and manifest go next to it.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Symbol prefix (`<name>_run`, `<name>_model`); defaults to the output's stem.
        #[arg(long)]
        name: Option<String>,
    },
    /// Run a model on inputs and write one .npy per output.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// Run the compiled code for this target (under qemu when it is not the host).
        #[arg(long, conflicts_with = "reference")]
        target: Option<String>,
        /// Hexagon targets only: `128` (128-byte HVX, the default) or `off` (plain C).
        #[arg(long, value_name = "128|off", requires = "target")]
        hvx: Option<String>,
        /// Run the reference interpreter instead of compiled code.
        #[arg(long)]
        reference: bool,
        /// An input as NAME=FILE or FILE (in input order); .npy or TensorProto .pb.
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Where to write `<output name>.npy` files.
        #[arg(long, default_value = "out")]
        output_dir: PathBuf,
        /// Also time every kernel of the compiled program (host JIT only) and print a
        /// table: kernel, graph nodes, median time, share, GFLOP/s.
        #[arg(long, conflicts_with = "reference")]
        profile: bool,
        /// Inferences to time with `--profile`.
        #[arg(long, default_value_t = 20, requires = "profile")]
        runs: usize,
    },
    /// Compare two output folders (or two tensor files) written by `run`: the largest
    /// error relative to each output's scale, failing above the tolerance.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Largest allowed |a-b| / max|b| per output.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
    },
}

pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.cmd {
        Command::Inspect { model } => {
            out!(
                "{}",
                edgecc::inspect::inspect(&model.model, &model.options("model".into())?)?
            );
            Ok(())
        }
        Command::Compile {
            model,
            target,
            hvx,
            emit,
            output,
            name,
        } => compile::compile(&model, &target, hvx.as_deref(), emit, output, name),
        Command::Run {
            model,
            target,
            hvx,
            reference,
            inputs,
            output_dir,
            profile,
            runs,
        } => run::run(
            &model,
            target.as_deref(),
            hvx.as_deref(),
            reference,
            &inputs,
            &output_dir,
            profile.then_some(runs),
        ),
        Command::Compare { a, b, tolerance } => run::compare(&a, &b, tolerance),
    }
}

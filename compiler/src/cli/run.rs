//! `edgecc run`: the interpreter, the host JIT, or a cross target under qemu.

use std::path::{Path, PathBuf};

use edgecc::Error;
use edgecc::ir::Tensor;
use edgecc::pipeline;
use edgecc_program::Program;

use super::{ModelArgs, out};
use edgecc::target::Target;

/// Pairs `--input` arguments with the model's inputs: `NAME=FILE`, or bare files in order.
fn read_inputs(names: &[String], args: &[String]) -> Result<Vec<Tensor>, Error> {
    let mut by_name: Vec<Option<PathBuf>> = vec![None; names.len()];
    let mut next = 0;
    for a in args {
        let (slot, file) = match a.split_once('=') {
            Some((n, f)) if names.iter().any(|x| x == n) => {
                (names.iter().position(|x| x == n).expect("found"), f)
            }
            Some((n, _)) if !Path::new(a).exists() => {
                return Err(Error::Input(format!(
                    "--input {a}: the model has no input '{n}' (inputs: {})",
                    names.join(", ")
                )));
            }
            _ => {
                while next < names.len() && by_name[next].is_some() {
                    next += 1;
                }
                if next == names.len() {
                    return Err(Error::Input(format!(
                        "--input {a}: more inputs than the model takes"
                    )));
                }
                (next, a.as_str())
            }
        };
        by_name[slot] = Some(PathBuf::from(file));
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&by_name)
        .filter(|(_, p)| p.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "missing --input for: {}",
            missing.join(", ")
        )));
    }
    by_name
        .into_iter()
        .map(|p| edgecc::io::read_tensor(&p.expect("checked")))
        .collect()
}

fn check_inputs(program: &Program, inputs: &[Tensor]) -> Result<(), Error> {
    for (io, t) in program.inputs.iter().zip(inputs) {
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        if t.dtype.to_program() != Some(io.dtype) || shape != io.shape {
            return Err(Error::Input(format!(
                "input '{}' must be {}{:?}, got {}{:?}",
                io.name,
                io.dtype.name(),
                io.shape,
                t.dtype,
                t.shape
            )));
        }
    }
    Ok(())
}

fn write_outputs(dir: &Path, names: &[String], outs: &[Tensor]) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (name, t) in names.iter().zip(outs) {
        let path = dir.join(format!("{}.npy", edgecc::artifact::c_ident(name)));
        edgecc::io::write_npy(&path, t)?;
        eprintln!("wrote {} ({}{:?})", path.display(), t.dtype, t.shape);
    }
    Ok(())
}

fn to_tensors(program: &Program, bufs: Vec<Vec<u8>>) -> Result<Vec<Tensor>, Error> {
    program
        .outputs
        .iter()
        .zip(bufs)
        .map(|(o, b)| {
            let dtype = edgecc::ir::DType::from_onnx(o.dtype as i32)
                .ok_or_else(|| Error::Internal("dtype".into()))?;
            Tensor::from_le_bytes(dtype, o.shape.iter().map(|&d| d as usize).collect(), &b)
                .ok_or_else(|| Error::Internal(format!("output '{}' has the wrong size", o.name)))
        })
        .collect()
}

fn input_names(g: &edgecc::ir::Graph) -> Vec<String> {
    g.inputs.iter().map(|&v| g.value(v).name.clone()).collect()
}

fn output_names(g: &edgecc::ir::Graph) -> Vec<String> {
    (0..g.outputs.len())
        .map(|i| g.output_name(i).to_string())
        .collect()
}

pub fn run(
    args: &ModelArgs,
    target: Option<&str>,
    hvx: Option<&str>,
    reference: bool,
    inputs: &[String],
    out_dir: &Path,
    profile_runs: Option<usize>,
) -> Result<(), Error> {
    // The interpreter runs what the targets cannot, so --reference stops before lowering.
    let opts = args.options("model".into())?;
    if reference {
        let (_, g) = edgecc::onnx::load(&args.model, &opts.import_options())?;
        let tensors = read_inputs(&input_names(&g), inputs)?;
        let outs = edgecc::interp::run(&g, &tensors)?;
        return write_outputs(out_dir, &output_names(&g), &outs);
    }
    // Parsed first, so that a bad name fails before the model compiles.
    let target = match target {
        Some(t) => edgecc::target::parse(t, hvx)?,
        None => Target::Cranelift(
            edgecc_cranelift::Target::host().map_err(|e| Error::Target(e.to_string()))?,
        ),
    };
    if let Target::Hexagon(h) = &target {
        edgecc::run_hexagon::check_runnable(h)?;
    }
    let c = pipeline::compile(&args.model, &opts)?;
    let g = &c.imported;
    let tensors = read_inputs(&input_names(g), inputs)?;
    let out_names = output_names(g);
    let program = &c.lowered.program;
    check_inputs(program, &tensors)?;
    let in_bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.to_le_bytes().expect("program dtype"))
        .collect();
    let target = match target {
        Target::Cranelift(t) => t,
        Target::Hexagon(h) => {
            if profile_runs.is_some() {
                return Err(Error::Input(format!(
                    "--profile times kernels on this machine; {h} code runs under qemu-hexagon"
                )));
            }
            let outs = edgecc::run_hexagon::run(program, &h, &in_bytes)?;
            return write_outputs(out_dir, &out_names, &to_tensors(program, outs)?);
        }
    };
    let native = edgecc::run_target::runs_natively(&target);
    if let Some(runs) = profile_runs {
        if !native {
            return Err(Error::Input(format!(
                "--profile times kernels on this machine; {target} code does not run natively here"
            )));
        }
        let nodes = &c.lowered.kernel_nodes;
        out!(
            "{}",
            edgecc::profile::profile_jit(program, nodes, &in_bytes, runs)?
        );
    }
    let outs = if native {
        edgecc::run_target::run_jit(program, &in_bytes)?
    } else {
        edgecc::run_target::run_cross(program, &target, &in_bytes)?
    };
    write_outputs(out_dir, &out_names, &to_tensors(program, outs)?)
}

/// Pairs files by name in two folders (or takes two files) and reports the error.
pub fn compare(a: &Path, b: &Path, tolerance: f64) -> Result<(), Error> {
    let pairs: Vec<(PathBuf, PathBuf)> = if a.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(a)
            .map_err(|e| Error::io(a, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .filter(|n| n.to_string_lossy().ends_with(".npy"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| (a.join(&n), b.join(&n)))
            .collect()
    } else {
        vec![(a.to_path_buf(), b.to_path_buf())]
    };
    if pairs.is_empty() {
        return Err(Error::Input(format!(
            "{}: no .npy files to compare",
            a.display()
        )));
    }
    let mut worst = 0f64;
    for (x, y) in &pairs {
        let (tx, ty) = (edgecc::io::read_tensor(x)?, edgecc::io::read_tensor(y)?);
        if tx.shape != ty.shape {
            return Err(Error::Input(format!(
                "{}: shape {:?} vs {:?}",
                x.display(),
                tx.shape,
                ty.shape
            )));
        }
        let (vx, vy) = match (tx.to_f64s(), ty.to_f64s()) {
            (Some(p), Some(q)) => (p, q),
            _ => return Err(Error::Input(format!("{}: not numeric", x.display()))),
        };
        let scale = vy
            .iter()
            .fold(0f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        let abs = vx
            .iter()
            .zip(&vy)
            .fold(0f64, |m, (p, q)| m.max((p - q).abs()));
        let name = x
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out!(
            "{name:<24} max abs error {abs:.3e}, relative to scale {:.3e}\n",
            abs / scale
        );
        worst = worst.max(abs / scale);
    }
    if worst > tolerance {
        return Err(Error::Input(format!(
            "outputs differ: relative error {worst:.3e} > {tolerance:e}"
        )));
    }
    out!("outputs agree within {tolerance:e}\n");
    Ok(())
}

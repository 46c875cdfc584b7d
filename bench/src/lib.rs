//! Shared pieces of the edgecc benchmarks (see `docs/benchmarks.md`):
//!
//! - `latency`: x86_64 wall-clock latency of the JIT-compiled model, side by side with
//!   onnxruntime (`bench/ort_time.py`) in the same run;
//! - `a64insn`: aarch64 guest instructions per inference of the static artifact, side by
//!   side with onnxruntime's aarch64 build, counted by the qemu-based tool in
//!   `../shared/aarch64-insn` (needed only when that binary runs, never to build or test).
//!
//! Nothing here asserts anything about speed; the binaries print tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgecc::pipeline::{self, Compiled, Options};
use edgecc_program::{DType, Program};

pub type Result<T> = std::result::Result<T, String>;

/// The repository root (the parent of `bench/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// Models benchmarked when none are named on the command line.
pub const DEFAULT_MODELS: &[&str] = &[
    "mlp",
    "cnn",
    "conv1d",
    "symbolic",
    "encoder",
    "bert_torchscript",
    "bert_dynamo",
    "bert_opset13",
    "distilbert",
    "roberta",
];

/// One example model directory: `model.onnx`, `input_<i>.npy`, `output_<i>.npy`.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub model: PathBuf,
    pub inputs: Vec<PathBuf>,
    pub outputs: Vec<PathBuf>,
}

fn numbered(dir: &Path, stem: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{stem}_{i}.npy")))
        .take_while(|p| p.exists())
        .collect()
}

impl Case {
    /// `arg` is a directory, or the name of one under `examples/models/`.
    pub fn find(arg: &str) -> Result<Case> {
        let p = Path::new(arg);
        let dir = if p.is_dir() {
            p.to_path_buf()
        } else {
            workspace_root().join("examples/models").join(arg)
        };
        let model = dir.join("model.onnx");
        if !model.exists() {
            return Err(format!("{}: no model.onnx", dir.display()));
        }
        let inputs = numbered(&dir, "input");
        if inputs.is_empty() {
            return Err(format!("{}: no input_0.npy", dir.display()));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        Ok(Case {
            name,
            model,
            outputs: numbered(&dir, "output"),
            inputs,
        })
    }

    /// The symbol prefix: the directory name made into a C identifier.
    pub fn c_name(&self) -> String {
        let mut s: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            s.insert(0, '_');
        }
        s
    }
}

/// The graph inputs' names in order (initializers excluded).
pub fn graph_input_names(model: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(model).map_err(|e| format!("{}: {e}", model.display()))?;
    let m = edgecc::onnx::decode(&bytes).map_err(|e| e.to_string())?;
    let inits: Vec<&str> = m
        .graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    Ok(m.graph
        .input
        .iter()
        .map(|v| v.name.clone())
        .filter(|n| !inits.contains(&n.as_str()))
        .collect())
}

/// A model compiled to the lowered program, with its inputs as raw bytes.
pub struct Prepared {
    pub case: Case,
    pub input_names: Vec<String>,
    pub compiled: Compiled,
    pub inputs: Vec<Vec<u8>>,
    /// Reading the file through lowering (`pipeline::compile`).
    pub front_time: Duration,
}

/// Compiles `case` with the input shapes of its `.npy` inputs (so symbolic dimensions are
/// bound to the reference data's).
/// Compiles `case` with the default pipeline minus the passes in `disable` (names as for
/// `edgecc compile --disable-pass`), so a benchmark can show what a pass is worth.
pub fn prepare(case: &Case, disable: &[String]) -> Result<Prepared> {
    let input_names = graph_input_names(&case.model)?;
    if input_names.len() != case.inputs.len() {
        return Err(format!(
            "{}: the model takes {} inputs, the folder has {}",
            case.name,
            input_names.len(),
            case.inputs.len()
        ));
    }
    let mut input_shapes = BTreeMap::new();
    let mut inputs = Vec::new();
    for (n, p) in input_names.iter().zip(&case.inputs) {
        let t = edgecc::io::read_tensor(p).map_err(|e| e.to_string())?;
        input_shapes.insert(n.clone(), t.shape.clone());
        inputs.push(
            t.to_le_bytes()
                .ok_or_else(|| format!("{}: unsupported dtype", p.display()))?,
        );
    }
    let opts = Options {
        input_shapes,
        name: case.c_name(),
        print_after: vec![],
        disable_passes: disable.to_vec(),
        ..Default::default()
    };
    let t0 = Instant::now();
    let compiled = pipeline::compile(&case.model, &opts).map_err(|e| e.to_string())?;
    let front_time = t0.elapsed();
    Ok(Prepared {
        case: case.clone(),
        input_names,
        compiled,
        inputs,
        front_time,
    })
}

impl Prepared {
    pub fn program(&self) -> &Program {
        &self.compiled.lowered.program
    }

    /// Zeroed output buffers in descriptor order.
    pub fn output_buffers(&self) -> Vec<Vec<u8>> {
        self.program()
            .outputs
            .iter()
            .map(|o| vec![0u8; o.byte_size() as usize])
            .collect()
    }

    /// Largest absolute difference between f32 outputs and the folder's `output_<i>.npy`
    /// (onnxruntime's), or `None` when there is no reference to compare with.
    pub fn max_abs_error(&self, outs: &[Vec<u8>]) -> Result<Option<f32>> {
        if self.case.outputs.len() != outs.len() {
            return Ok(None);
        }
        let mut worst = 0f32;
        for ((io, got), p) in self
            .program()
            .outputs
            .iter()
            .zip(outs)
            .zip(&self.case.outputs)
        {
            if io.dtype != DType::F32 {
                continue;
            }
            let t = edgecc::io::read_tensor(p).map_err(|e| e.to_string())?;
            let want = t
                .as_f32()
                .ok_or_else(|| format!("{}: not f32", p.display()))?;
            if want.len() * 4 != got.len() {
                return Err(format!("{}: size differs from the output", p.display()));
            }
            for (w, g) in want.iter().zip(got.chunks_exact(4)) {
                let g = f32::from_le_bytes(g.try_into().expect("4 bytes"));
                worst = worst.max((w - g).abs());
            }
        }
        Ok(Some(worst))
    }
}

/// The median of `v` (sorted in place); 0 for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Parses count.py's result line, `<label>: <N> guest instructions per inference ...`.
pub fn parse_count_line(out: &str) -> Option<f64> {
    out.lines().rev().find_map(|l| {
        let (_, rest) = l.rsplit_once(": ")?;
        let (n, tail) = rest.split_once(' ')?;
        tail.starts_with("guest instructions per inference")
            .then(|| n.parse().ok())
            .flatten()
    })
}

/// Formats a byte count as `12.3 KiB` etc.
pub fn human_bytes(b: u64) -> String {
    if b < 1024 {
        format!("{b} B")
    } else if b < 1024 * 1024 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn count_line() {
        let out = "harness: 123456 guest instructions per inference on cortex-a76 (k=10)\n";
        assert_eq!(parse_count_line(out), Some(123456.0));
        let ort = "onnxruntime model.onnx: 98 guest instructions per inference on cortex-a72 (k=3)";
        assert_eq!(parse_count_line(ort), Some(98.0));
        assert_eq!(parse_count_line("failed"), None);
    }

    #[test]
    fn examples_are_found() {
        let c = Case::find("mlp").unwrap();
        assert_eq!(c.c_name(), "mlp");
        assert_eq!(c.inputs.len(), 1);
        assert_eq!(graph_input_names(&c.model).unwrap(), vec!["x".to_string()]);
        assert!(Case::find("no-such-model").is_err());
    }
}

//! `edgecc compile`.

use std::path::{Path, PathBuf};

use edgecc::Error;
use edgecc::artifact::{c_ident, header, manifest};
use edgecc::pipeline;
use edgecc_cranelift::{ObjectOptions, Target};

use super::{Emit, ModelArgs};

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

pub fn parse_target(s: &str) -> Result<Target, Error> {
    s.parse::<Target>()
        .map_err(|e| Error::Target(e.to_string()))
}

pub fn compile(
    args: &ModelArgs,
    target: &str,
    emit: Emit,
    output: Option<PathBuf>,
    name: Option<String>,
) -> Result<(), Error> {
    let start = std::time::Instant::now();
    let target = parse_target(target)?;
    let default_ext = match emit {
        Emit::Obj => "o",
        Emit::So => "so",
        Emit::Asm => "s",
        Emit::Ir => "ir",
        Emit::Header => "h",
    };
    let output = output.unwrap_or_else(|| PathBuf::from(format!("model.{default_ext}")));
    let stem = output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let name = name.unwrap_or_else(|| c_ident(stem.split('.').next().unwrap_or("model")));
    let c = pipeline::compile(&args.model, &args.options(name.clone())?)?;
    float_report(&c);
    let program = &c.lowered.program;
    let source = args.model.display().to_string();
    let header_path = output.with_file_name(format!("{stem}.h"));
    let header_text = header::header(program, &source, &target.to_string());
    let (code_bytes, const_bytes, kind) = match emit {
        Emit::Ir => {
            write(&output, edgecc::ir::print::print(&c.graph))?;
            return Ok(());
        }
        Emit::Header => {
            write(&output, &header_text)?;
            return Ok(());
        }
        Emit::Asm => {
            let text = edgecc_cranelift::emit_clif(program, &target)
                .map_err(|e| Error::Target(e.to_string()))?;
            write(&output, text)?;
            return Ok(());
        }
        Emit::Obj | Emit::So => {
            let obj = edgecc_cranelift::compile_object(program, &target, &ObjectOptions::default())
                .map_err(|e| Error::Target(e.to_string()))?;
            if emit == Emit::Obj {
                write(&output, &obj.bytes)?;
            } else {
                let tmp = tempfile::Builder::new()
                    .suffix(".o")
                    .tempfile()
                    .map_err(|e| Error::io("temporary object", e))?;
                write(tmp.path(), &obj.bytes)?;
                edgecc_cranelift::link_shared(tmp.path(), &output, &target)
                    .map_err(|e| Error::Target(e.to_string()))?;
            }
            (
                obj.text_bytes,
                obj.const_bytes,
                if emit == Emit::Obj { "obj" } else { "so" },
            )
        }
    };
    write(&header_path, &header_text)?;
    let artifact_bytes = std::fs::read(&output).map_err(|e| Error::io(&output, e))?;
    let (inputs, outputs) = manifest::Manifest::io(program);
    let m = manifest::Manifest {
        edgecc_version: env!("CARGO_PKG_VERSION"),
        abi_version: edgecc_runtime::ABI_VERSION,
        model: manifest::ModelInfo {
            name: name.clone(),
            source: source.clone(),
            sha256: c.source_sha256.clone(),
        },
        target: target.to_string(),
        artifact: manifest::ArtifactInfo {
            file: file_name(&output),
            kind: kind.into(),
            sha256: manifest::sha256(&artifact_bytes),
            code_bytes,
            const_bytes,
            header: Some(file_name(&header_path)),
        },
        arena: manifest::ArenaInfo {
            size: program.arena_size,
            align: program.arena_align,
            lower_bound: c.lowered.arena_lower_bound,
            heuristic: c.lowered.arena_heuristic.into(),
        },
        inputs,
        outputs,
        passes: c
            .passes
            .iter()
            .map(|p| manifest::PassInfo {
                name: p.name.into(),
                summary: p.summary.clone(),
            })
            .collect(),
    };
    let manifest_path = output.with_file_name(format!("{stem}.json"));
    write(&manifest_path, m.to_json())?;
    report(
        &c,
        &target,
        code_bytes,
        const_bytes,
        &[&output, &header_path, &manifest_path],
    );
    eprintln!(
        "compiled in {:.1} ms (front end, passes and lowering {:.1} ms)",
        start.elapsed().as_secs_f64() * 1e3,
        c.elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What a quantized model still computes in float, node by node with the reason, so that
/// no float fallback is silent (`--require-int8` turns it into an error).
fn float_report(c: &pipeline::Compiled) {
    if c.float_islands.is_empty() {
        return;
    }
    eprintln!(
        "int8: {} node(s) of the quantized model run in float (--require-int8 refuses this):",
        c.float_islands.len()
    );
    for i in &c.float_islands {
        eprintln!("  node '{}' ({}): {}", i.node, i.op, i.reason);
    }
}

/// The compile report on stderr: passes, memory, sizes.
fn report(c: &pipeline::Compiled, target: &Target, code: u64, consts: u64, files: &[&Path]) {
    let l = &c.lowered;
    for p in &c.passes {
        eprintln!("pass {:<16} {}", p.name, p.summary);
    }
    if l.in_place > 0 {
        eprintln!("lower: {} elementwise kernels run in place", l.in_place);
    }
    if l.fused_activations > 0 {
        eprintln!(
            "lower: {} activations fused into kernel epilogues",
            l.fused_activations
        );
    }
    let pct = if l.arena_lower_bound > 0 {
        format!(
            "{:.1}% of lower bound {}",
            100.0 * l.program.arena_size as f64 / l.arena_lower_bound as f64,
            l.arena_lower_bound
        )
    } else {
        "no intermediates".into()
    };
    eprintln!(
        "arena: {} bytes ({pct}, {})",
        l.program.arena_size, l.arena_heuristic
    );
    eprintln!(
        "code: {code} bytes, constants: {consts} bytes, {} kernels, target {target}",
        l.program.kernels.len()
    );
    let without = c
        .kernels_without_fusion
        .map_or("unknown: lowering failed".to_string(), |m| m.to_string());
    eprintln!(
        "kernels: {} after fusion ({without} without the fusion passes)",
        l.program.kernels.len()
    );
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    eprintln!("wrote {}", files.join(", "));
}

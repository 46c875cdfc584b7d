//! `edgecc compile`.

use std::path::{Path, PathBuf};

use edgecc::Error;
use edgecc::artifact::{c_ident, header, manifest};
use edgecc::pipeline;
use edgecc::target::{self, Target};
use edgecc_cranelift::ObjectOptions;

use super::{Emit, ModelArgs};

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The artifact `emit` asks for, refused early when the target cannot make it: Hexagon
/// targets write C (and IR, header), Cranelift targets everything but C.
fn check_emit(target: &Target, emit: Option<Emit>) -> Result<Emit, Error> {
    match (target, emit) {
        (Target::Hexagon(_), None) => Ok(Emit::C),
        (Target::Cranelift(_), None) => Ok(Emit::Obj),
        (Target::Hexagon(h), Some(e @ (Emit::Obj | Emit::So | Emit::Asm))) => {
            let what = match e {
                Emit::Obj => "obj",
                Emit::So => "so",
                _ => "asm",
            };
            Err(Error::Target(format!(
                "--emit {what}: {h} writes C, not machine code; use --emit c (the default for \
                 hexagon targets) and compile the C with clang --target=hexagon"
            )))
        }
        (Target::Cranelift(t), Some(Emit::C)) => Err(Error::Target(format!(
            "--emit c is for hexagon targets (--target hexagon); {t} writes obj, so or asm"
        ))),
        (_, Some(e)) => Ok(e),
    }
}

pub fn compile(
    args: &ModelArgs,
    target: &str,
    hvx: Option<&str>,
    emit: Option<Emit>,
    output: Option<PathBuf>,
    name: Option<String>,
) -> Result<(), Error> {
    let start = std::time::Instant::now();
    let target = target::parse(target, hvx)?;
    let emit = check_emit(&target, emit)?;
    let default_ext = match emit {
        Emit::Obj => "o",
        Emit::So => "so",
        Emit::Asm => "s",
        Emit::Ir => "ir",
        Emit::Header => "h",
        Emit::C => "c",
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
    // The header names the model by file name and hash, not by the path it was given:
    // the same model compiled in another checkout or folder gives the same header.
    let file = args
        .model
        .file_name()
        .map_or(source.clone(), |f| f.to_string_lossy().into_owned());
    let header_text = header::header(
        program,
        &format!("{file} (sha256 {})", c.source_sha256),
        &target.to_string(),
    );
    let (code_bytes, const_bytes, kind) = match (emit, &target) {
        (Emit::Ir, _) => {
            write(&output, edgecc::ir::print::print(&c.graph))?;
            return Ok(());
        }
        (Emit::Header, _) => {
            write(&output, &header_text)?;
            return Ok(());
        }
        (Emit::Asm, Target::Cranelift(t)) => {
            let text = edgecc_cranelift::emit_clif(program, t)
                .map_err(|e| Error::Target(e.to_string()))?;
            write(&output, text)?;
            return Ok(());
        }
        (Emit::Obj | Emit::So, Target::Cranelift(t)) => {
            let obj = edgecc_cranelift::compile_object(program, t, &ObjectOptions::default())
                .map_err(|e| Error::Target(e.to_string()))?;
            if emit == Emit::Obj {
                write(&output, &obj.bytes)?;
            } else {
                let tmp = tempfile::Builder::new()
                    .suffix(".o")
                    .tempfile()
                    .map_err(|e| Error::io("temporary object", e))?;
                write(tmp.path(), &obj.bytes)?;
                edgecc_cranelift::link_shared(tmp.path(), &output, t)
                    .map_err(|e| Error::Target(e.to_string()))?;
            }
            (
                obj.text_bytes,
                obj.const_bytes,
                if emit == Emit::Obj { "obj" } else { "so" },
            )
        }
        // The C's size stands in for the code size: no machine code exists until clang
        // compiles it.
        (Emit::C, Target::Hexagon(h)) => {
            let text = h.emit_c(program)?;
            write(&output, &text)?;
            let consts = program.consts.iter().map(|k| k.data.len() as u64).sum();
            (text.len() as u64, consts, "c")
        }
        (Emit::C | Emit::Obj | Emit::So | Emit::Asm, _) => {
            return Err(Error::Internal(format!(
                "check_emit let an impossible artifact through for {target}"
            )));
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
    let code_kind = match target {
        Target::Hexagon(_) => "C source",
        Target::Cranelift(_) => "code",
    };
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
        "{code_kind}: {code} bytes, constants: {consts} bytes, {} kernels, target {target}",
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

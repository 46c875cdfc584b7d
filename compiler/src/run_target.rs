//! Running a lowered program for real: in process through the JIT, or as a static
//! executable under qemu-user for a cross target. `edgecc run` and the tests use these.

use std::path::Path;
use std::process::Command;

use edgecc_cranelift::{Arch, ObjectOptions, Target};
use edgecc_program::Program;

use crate::Error;

fn target_err(e: impl std::fmt::Display) -> Error {
    Error::Target(e.to_string())
}

/// Whether code for `target` runs on this machine as is (same architecture), so the JIT
/// can stand in for the artifact.
pub fn runs_natively(target: &Target) -> bool {
    Target::host().is_ok_and(|h| h.arch() == target.arch())
}

/// Compiles for the host with the JIT and runs once through `edgecc-runtime`'s checked
/// call. Inputs and outputs are little-endian bytes in descriptor order.
pub fn run_jit(program: &Program, inputs: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, Error> {
    let jit = edgecc_cranelift::compile_jit(program).map_err(target_err)?;
    let model = edgecc_runtime::Model::new(jit.desc()).map_err(target_err)?;
    let mut io = HostIo::new(program);
    io.run(&model, inputs)?;
    Ok(io.outs)
}

/// The caller's side of a program run on the host: output buffers, an aligned arena, and
/// the pointer arrays the entry point (and every kernel) takes.
pub struct HostIo {
    pub outs: Vec<Vec<u8>>,
    arena: AlignedArena,
    in_ptrs: Vec<*const u8>,
    out_ptrs: Vec<*mut u8>,
}

impl HostIo {
    pub fn new(program: &Program) -> HostIo {
        HostIo {
            outs: program
                .outputs
                .iter()
                .map(|o| vec![0u8; o.byte_size() as usize])
                .collect(),
            arena: AlignedArena::new(program.arena_size as usize, program.arena_align as usize),
            in_ptrs: vec![std::ptr::null(); program.inputs.len()],
            out_ptrs: vec![std::ptr::null_mut(); program.outputs.len()],
        }
    }

    /// One run through `edgecc-runtime`'s checked call, which validates every buffer and
    /// fills in the pointer arrays [`HostIo::pointers`] returns.
    pub fn run(&mut self, model: &edgecc_runtime::Model, inputs: &[Vec<u8>]) -> Result<(), Error> {
        let ins: Vec<&[u8]> = inputs.iter().map(|b| b.as_slice()).collect();
        let mut out_refs: Vec<&mut [u8]> = self.outs.iter_mut().map(|b| b.as_mut_slice()).collect();
        model
            .run_with(
                &ins,
                &mut out_refs,
                self.arena.as_mut_slice(),
                &mut self.in_ptrs,
                &mut self.out_ptrs,
            )
            .map_err(target_err)
    }

    /// The input pointer array, the output pointer array and the arena, as the last
    /// [`HostIo::run`] passed them (valid while `self` and those inputs live).
    pub fn pointers(&mut self) -> (*const *const u8, *const *mut u8, *mut u8) {
        (
            self.in_ptrs.as_ptr(),
            self.out_ptrs.as_ptr(),
            self.arena.as_mut_slice().as_mut_ptr(),
        )
    }
}

/// A heap buffer with a guaranteed base alignment.
pub struct AlignedArena {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedArena {
    pub fn new(len: usize, align: usize) -> Self {
        let align = align.max(1);
        let buf = vec![0u8; len + align];
        let start = buf.as_ptr().align_offset(align);
        AlignedArena { buf, start, len }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// The program that runs a cross-compiled artifact under emulation, and the C compiler
/// that links it.
fn cross_tools(target: &Target) -> Result<(&'static str, &'static str), Error> {
    match target.arch() {
        Arch::Aarch64 => Ok(("aarch64-linux-gnu-gcc", "qemu-aarch64")),
        _ => Err(Error::Target(format!(
            "running {target} code on this machine is not supported"
        ))),
    }
}

pub(crate) fn tool(
    cmd: &mut Command,
    what: &str,
    install: &str,
) -> Result<std::process::Output, Error> {
    let out = cmd.output().map_err(|e| {
        Error::Target(format!(
            "cannot run `{what}` ({e}); install it with `{install}`"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Target(format!(
            "`{what}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

/// Builds a static executable from `program` and the generic C harness, for `target`,
/// in `dir`. Returns its path.
pub fn build_harness(
    program: &Program,
    target: &Target,
    dir: &Path,
) -> Result<std::path::PathBuf, Error> {
    let (cc, _) = cross_tools(target)?;
    let obj = edgecc_cranelift::compile_object(program, target, &ObjectOptions::default())
        .map_err(target_err)?;
    let obj_path = dir.join("model.o");
    std::fs::write(&obj_path, &obj.bytes).map_err(|e| Error::io(&obj_path, e))?;
    let harness_c = dir.join("edgecc_harness.c");
    std::fs::write(&harness_c, edgecc_runtime::HARNESS_C).map_err(|e| Error::io(&harness_c, e))?;
    let exe = dir.join("harness");
    tool(
        Command::new(cc)
            .arg("-static")
            .arg("-O2")
            .arg(format!("-DEDGECC_MODEL={}_model", program.name))
            .arg("-o")
            .arg(&exe)
            .arg(&harness_c)
            .arg(&obj_path),
        cc,
        "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    )?;
    Ok(exe)
}

/// Compiles for a cross target, links the harness and runs it under qemu-user.
pub fn run_cross(
    program: &Program,
    target: &Target,
    inputs: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, Error> {
    let (_, qemu) = cross_tools(target)?;
    let dir = tempfile::tempdir().map_err(|e| Error::io("temporary directory", e))?;
    let exe = build_harness(program, target, dir.path())?;
    let mut cmd = Command::new(qemu);
    cmd.arg(&exe);
    for (i, b) in inputs.iter().enumerate() {
        let p = dir.path().join(format!("in{i}.bin"));
        std::fs::write(&p, b).map_err(|e| Error::io(&p, e))?;
        cmd.arg(p);
    }
    cmd.arg("--");
    let out_paths: Vec<_> = (0..program.outputs.len())
        .map(|i| dir.path().join(format!("out{i}.bin")))
        .collect();
    cmd.args(&out_paths);
    tool(&mut cmd, qemu, "apt-get install qemu-user")?;
    out_paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| Error::io(p, e)))
        .collect()
}

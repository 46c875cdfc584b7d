//! Every op compiled for aarch64 (NEON) and run as a static executable under
//! qemu-aarch64, against the reference interpreter. A qemu run costs a compile, a static
//! link and a process start, so each test puts a sample of ~100 random op instances
//! (every family of `ops_jit.rs`, plus every chain) into ONE graph with one output per
//! instance and runs it once. Tolerances: `ops_common/mod.rs`.
//!
//! Missing cross tools fail the tests (they are never skipped).

mod ops_common;

use std::process::Command;

use ops_common::*;

fn require_tools() {
    for (tool, install) in [
        ("qemu-aarch64", "apt-get install qemu-user"),
        (
            "aarch64-linux-gnu-gcc",
            "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        ),
    ] {
        match Command::new(tool).arg("--version").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "`{tool} --version` failed ({}): the aarch64 op tests need it; {install}",
                o.status
            ),
            Err(e) => panic!("`{tool}` is missing ({e}): the aarch64 op tests need it; {install}"),
        }
    }
}

fn run(seed: u64) {
    require_tools();
    let net = batch_net(seed, 1);
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!(
            "aarch64, seed {seed}, {} outputs:\n{e}",
            net.g.outputs.len()
        );
    }
}

#[test]
fn batch_seed_1() {
    run(1);
}

#[test]
fn batch_seed_2() {
    run(2);
}

#[test]
fn batch_seed_3() {
    run(3);
}

#[test]
fn batch_seed_4() {
    run(4);
}

/// Every mask op (Compare, And/Or/Xor, Not, Where, Tile) in every dtype it takes, and the
/// PyTorch attention-mask chain (i64 mask and ids → Cast/Not/Equal/Or → Where → Softmax),
/// and data movement (Expand, Transpose, Concat, Slice, Split, Gather) of every dtype, in
/// one graph under qemu.
#[test]
fn masks_every_dtype_and_attention_mask() {
    require_tools();
    let mut net = attention_mask_net();
    for p in every_mask_case() {
        build_mask(&mut net, &p);
    }
    for (i, dtype) in MASK_DTYPES.into_iter().enumerate() {
        build_movement(&mut net, dtype, i as u64);
    }
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!("aarch64 masks:\n{e}");
    }
}

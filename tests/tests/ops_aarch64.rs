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

/// Every Einsum form in one graph (ops_jit.rs `einsum_every_form` on the JIT).
#[test]
fn einsum_every_form() {
    require_tools();
    let mut net = Net::new();
    for (i, &equation) in EINSUM_FORMS.iter().enumerate() {
        let p = EinsumP {
            equation,
            sizes: vec![2, 3, 4, 5, 6, 7, 3, 2],
            ellipsis: vec![3, 2],
            forms: vec![0, 3, 1],
            consts: vec![false, i % 3 == 0, false],
            seed: i as u64,
        };
        build_einsum(&mut net, &p);
    }
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!("aarch64 einsum forms:\n{e}");
    }
}

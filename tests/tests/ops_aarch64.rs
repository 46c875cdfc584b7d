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

/// Conv → Add(skip) → activation as one Conv kernel with a residual, in every conv
/// code-generation form, under qemu.
#[test]
fn conv_residual_epilogue() {
    require_tools();
    let net = ops_common::conv_residual_net();
    ops_common::assert_conv_residual_kernels(&net);
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!("aarch64 conv residual:\n{e}");
    }
}

/// The k-lanes GEMM tile (11×8, A read in place along contiguous K, 4 K values per load; see
/// `Tile::for_gemm`) on the shapes that exercise its edges: row tails (M mod 11), K
/// remainders (K mod 4), every column tail (N mod 8 in 1..7), batches, constant and
/// input B, fused activations, and transformer-sized projections.
#[test]
fn gemm_k_lanes_tile() {
    require_tools();
    let mut net = Net::new();
    let shapes = [
        (4, 4, 8),
        (8, 16, 8),
        (13, 37, 23),
        (9, 5, 3),
        (17, 64, 31),
        (24, 7, 13),
        (11, 2, 30),
        (128, 64, 48),
        (33, 96, 40),
    ];
    for (i, &(m, k, n)) in shapes.iter().enumerate() {
        for b_const in [true, false] {
            let p = MatMulP {
                m,
                k,
                n,
                batch: if i % 3 == 0 { vec![2] } else { vec![] },
                a_batch: if i % 3 == 0 {
                    Batch::Full
                } else {
                    Batch::Absent
                },
                b_batch: if i % 3 == 0 && !b_const {
                    Batch::Full
                } else {
                    Batch::Absent
                },
                a_vec: false,
                b_vec: false,
                b_const,
                act: if i % 2 == 0 { Act::Relu } else { Act::None },
                seed: 100 + i as u64,
            };
            build_matmul(&mut net, &p);
        }
    }
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!("aarch64 k-lanes GEMM:\n{e}");
    }
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

/// Every scaled/masked softmax form (`ops_jit.rs` `attention_softmax_every_form` on the
/// JIT) in one graph under qemu: NEON rows with tails, broadcast masks, scale alone.
#[test]
fn attention_softmax_every_form() {
    require_tools();
    let mut net = Net::new();
    for p in every_attention_softmax_case() {
        build_attention_softmax(&mut net, &p);
    }
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!("aarch64 attention softmax:\n{e}");
    }
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

/// LayerNormalization's row kernel on NEON: every length of the JIT test (tails of 1 to 3
/// lanes, length 1, 64 and 67), every scale and bias form, with and without statistics.
#[test]
fn layer_norm_every_form() {
    require_tools();
    let mut net = Net::new();
    for p in every_ln_form_case() {
        build_ln_form(&mut net, &p);
    }
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!("aarch64 layer norm forms:\n{e}");
    }
}

/// LayerNormalization with its Mean and InvStdDev outputs on every axis of a 3-D input,
/// and ReduceMin/ReduceProd over each run of adjacent axes, some with NaN and ±inf, in
/// one graph (`ops_transformer.rs` has them as JIT property tests).
#[test]
fn layer_norm_stats_and_min_prod_reductions() {
    use edgecc::ir::ReduceKind;
    require_tools();
    let mut net = Net::new();
    let shape = vec![3, 5, 6];
    for (i, axis) in [0i64, 1, 2, -1].into_iter().enumerate() {
        let p = LnStatsP {
            shape: shape.clone(),
            axis,
            epsilon: [1e-5, 1e-2][i % 2],
            which: 3,
            seed: i as u64,
        };
        build_ln_stats(&mut net, &p);
    }
    let mut seed = 100;
    for kind in [ReduceKind::Min, ReduceKind::Prod] {
        for (a, b) in [(0, 1), (1, 2), (2, 3), (0, 2), (1, 3), (0, 3)] {
            seed += 1;
            let p = ReduceP {
                shape: vec![4, 7, 9],
                a,
                b,
                kind,
                keepdims: seed % 2 == 0,
                specials: seed % 3 == 0,
                seed,
            };
            build_reduce(&mut net, &p);
        }
    }
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!("aarch64 LayerNorm stats and Min/Prod reductions:\n{e}");
    }
}

/// CumSum (every axis and flag, f32/i32/i64), integer arithmetic with broadcasting and
/// wrapping, and the RoBERTa position-id chain, in one graph under qemu.
#[test]
fn cumsum_integer_arithmetic_and_position_ids() {
    use edgecc::ir::DType;
    require_tools();
    let mut net = Net::new();
    let mut seed = 500;
    for dtype in [DType::F32, DType::I32, DType::I64] {
        for axis in [0i64, 1, -1] {
            for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)]
            {
                seed += 1;
                build_cumsum(&mut net, &[3, 5, 4], axis, exclusive, reverse, dtype, seed);
            }
        }
    }
    build_int_arith(&mut net, DType::I32, 3);
    build_int_arith(&mut net, DType::I64, 4);
    roberta_position_ids(&mut net);
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    if let Err(e) = net.check_cross(&target) {
        panic!("aarch64 CumSum and integer arithmetic:\n{e}");
    }
}

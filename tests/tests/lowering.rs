//! Lowering and memory planning: the lowered program, run by the scalar program executor,
//! computes what the interpreter computes, on every example model.

mod common;

use common::exec;

use std::collections::BTreeMap;

use edgecc::onnx::ImportOptions;
use edgecc::passes::PassManager;

fn check(name: &str, shapes: &[(&str, Vec<usize>)]) {
    let dir = common::example(name);
    let opts = ImportOptions {
        input_shapes: shapes
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    let (_, mut graph) = edgecc::onnx::load(&dir.join("model.onnx"), &opts).unwrap();
    let inputs = common::npys(&dir, "input");
    let want = edgecc::interp::run(&graph, &inputs).unwrap();
    PassManager::default_pipeline().run(&mut graph).unwrap();
    let lowered = edgecc::lower::lower(&graph, "model").unwrap();
    // The plan is valid (never below the peak of live bytes) and tight: the design's bar
    // is an arena within a few percent of its lower bound.
    let (size, bound) = (lowered.program.arena_size, lowered.arena_lower_bound);
    assert!(size >= bound);
    assert!(
        size as f64 <= bound as f64 * 1.05,
        "{name}: arena {size} vs lower bound {bound}"
    );
    let got = exec(&lowered.program, &inputs);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let err = common::max_rel_err(g, w.as_f32().unwrap());
        // The executor accumulates in f32 where the interpreter uses f64.
        assert!(err <= 1e-5, "{name} output {i}: max relative error {err:e}");
    }
}

#[test]
fn mlp() {
    check("mlp", &[]);
}

#[test]
fn cnn() {
    check("cnn", &[]);
}

#[test]
fn encoder() {
    check("encoder", &[]);
}

#[test]
fn conv1d() {
    check("conv1d", &[]);
}

#[test]
fn einsum() {
    check("einsum", &[]);
}

#[test]
fn symbolic() {
    check("symbolic", &[("x", vec![3, 16])]);
}

/// An elementwise kernel may run in place only in storage nothing else reads later, also
/// through aliases: here `c`'s storage is read again through `Reshape(c)` after `Relu(c)`,
/// and `e`'s only reader is `Exp(e)`.
#[test]
fn in_place_reuse_respects_aliases() {
    use edgecc::ir::{Binary, Graph, Op, Tensor, Unary};
    let mut g = Graph::new("alias");
    let x = g.add_input("x", edgecc::ir::DType::F32, vec![2, 8]);
    g.inputs.push(x);
    let w = g.add_const(
        "w",
        Tensor::f32(
            vec![8, 8],
            (0..64).map(|i| (i % 7) as f32 * 0.25 - 0.7).collect(),
        ),
    );
    let (_, c) = g.add_node("mm", Op::MatMul, vec![x, w]).unwrap();
    let (_, r) = g
        .add_node(
            "reshape",
            Op::Reshape {
                shape: vec![16],
                allowzero: false,
            },
            vec![c[0]],
        )
        .unwrap();
    let (_, relu) = g
        .add_node("relu", Op::Unary(Unary::Neg), vec![c[0]])
        .unwrap();
    let (_, e) = g
        .add_node("add", Op::Binary(Binary::Add), vec![relu[0], relu[0]])
        .unwrap();
    let (_, ex) = g
        .add_node("exp", Op::Unary(Unary::Exp), vec![e[0]])
        .unwrap();
    let (_, late) = g
        .add_node("late", Op::Unary(Unary::Sigmoid), vec![r[0]])
        .unwrap();
    g.outputs = vec![ex[0], late[0]];
    edgecc::ir::verify::verify(&g).unwrap();
    let input = Tensor::f32(vec![2, 8], (0..16).map(|i| i as f32 * 0.1 - 0.8).collect());
    let want = edgecc::interp::run(&g, std::slice::from_ref(&input)).unwrap();
    let lowered = edgecc::lower::lower(&g, "alias").unwrap();
    assert!(
        lowered.in_place >= 1,
        "the chain after Neg should run in place"
    );
    let got = exec(&lowered.program, &[input]);
    for (k, (gv, w)) in got.iter().zip(&want).enumerate() {
        let err = common::max_rel_err(gv, w.as_f32().unwrap());
        assert!(err <= 1e-6, "output {k}: {err:e}");
    }
}

/// Einsum lowers to GEMMs over strided views: the attention forms (and a transposed
/// operand, and a diagonal) are one GEMM each with no copy, an operand whose batch labels
/// do not nest (`bqhd`) is copied once first, and one-operand sums are Reduce kernels. The
/// executor computes what the interpreter does.
#[test]
fn einsum_kernels() {
    use edgecc::ir::{DType, Equation, Graph, Op, Tensor};
    /// Equation, operand shapes, the kernels it must lower to.
    type Case = (
        &'static str,
        &'static [&'static [usize]],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "bhqd,bhkd->bhqk",
            &[&[2, 3, 5, 8], &[2, 3, 7, 8]],
            &["gemm"],
        ),
        (
            "bhqk,bhkd->bhqd",
            &[&[2, 3, 5, 7], &[2, 3, 7, 8]],
            &["gemm"],
        ),
        ("bid,bjd->bij", &[&[2, 5, 8], &[2, 7, 8]], &["gemm"]),
        ("ji,jk->ik", &[&[4, 3], &[4, 5]], &["gemm"]),
        ("bii,bij->bj", &[&[2, 4, 4], &[2, 4, 5]], &["gemm"]),
        (
            "bqhd,bkhd->bhqk",
            &[&[2, 5, 3, 8], &[2, 7, 3, 8]],
            &["elementwise", "elementwise", "gemm"],
        ),
        ("ijk->ik", &[&[3, 4, 5]], &["reduce"]),
        ("ijk->ki", &[&[3, 4, 5]], &["elementwise", "reduce"]),
        ("bii->bi", &[&[2, 4, 4]], &["elementwise"]),
    ];
    for &(equation, shapes, kernels) in cases {
        let mut g = Graph::new("einsum");
        let mut inputs = Vec::new();
        let mut ids = Vec::new();
        for (i, s) in shapes.iter().enumerate() {
            let v = g.add_input(format!("x{i}"), DType::F32, s.to_vec());
            g.inputs.push(v);
            ids.push(v);
            let n: usize = s.iter().product();
            inputs.push(Tensor::f32(
                s.to_vec(),
                (0..n)
                    .map(|j| ((j * 7 + i) % 11) as f32 * 0.1 - 0.5)
                    .collect(),
            ));
        }
        let op = Op::Einsum(Equation::parse(equation).unwrap());
        let (_, y) = g.add_node("einsum", op, ids).unwrap();
        g.outputs = vec![y[0]];
        let want = edgecc::interp::run(&g, &inputs).unwrap();
        let lowered = edgecc::lower::lower(&g, "einsum").unwrap();
        let names: Vec<&str> = lowered.program.kernels.iter().map(|k| k.name()).collect();
        assert_eq!(names, kernels, "{equation}");
        let got = exec(&lowered.program, &inputs);
        let err = common::max_rel_err(&got[0], want[0].as_f32().unwrap());
        assert!(err <= 1e-5, "{equation}: max relative error {err:e}");
    }
}

/// A fused GEMM epilogue (`MatMul → Add(bias) → Add(residual) → Gelu`, made one
/// FusedMatMul by the default pipeline) lowers to one Gemm kernel carrying the bias, the
/// residual and the activation: with the batch folded into M when the residual has the
/// output's shape, batched when the residual is shared by the batches, and after one
/// copy of the residual when its broadcast strides fit neither. The executor computes
/// what the interpreter does.
#[test]
fn fused_epilogue_is_one_gemm_kernel() {
    use edgecc::ir::{Binary, DType, Graph, Op, Tensor};
    use edgecc_program::{Activation, Kernel};
    let vals = |n: usize, s: usize| -> Vec<f32> {
        (0..n)
            .map(|j| ((j * 7 + s * 3) % 13) as f32 * 0.1 - 0.6)
            .collect()
    };
    // Residual shape, the kernels it must lower to, the Gemm's batch.
    let cases: &[(&[usize], &[&str], u32)] = &[
        (&[2, 3, 5, 6], &["gemm"], 1),
        (&[5, 6], &["gemm"], 6),
        (&[2, 1, 5, 6], &["elementwise", "gemm"], 1),
    ];
    for &(rs, kernels, batch) in cases {
        let mut g = Graph::new("epilogue");
        let x = g.add_input("x", DType::F32, vec![2, 3, 5, 8]);
        let r = g.add_input("r", DType::F32, rs.to_vec());
        g.inputs.extend([x, r]);
        let w = g.add_const("w", Tensor::f32(vec![8, 6], vals(48, 1)));
        let b = g.add_const("b", Tensor::f32(vec![6], vals(6, 2)));
        let (_, h) = g.add_node("mm", Op::MatMul, vec![x, w]).unwrap();
        let (_, h) = g
            .add_node("add_b", Op::Binary(Binary::Add), vec![h[0], b])
            .unwrap();
        let (_, h) = g
            .add_node("add_r", Op::Binary(Binary::Add), vec![r, h[0]])
            .unwrap();
        let (_, y) = g
            .add_node("gelu", Op::Gelu { tanh: false }, vec![h[0]])
            .unwrap();
        g.outputs.push(y[0]);
        let inputs = [
            Tensor::f32(vec![2, 3, 5, 8], vals(240, 3)),
            Tensor::f32(rs.to_vec(), vals(rs.iter().product(), 4)),
        ];
        let want = edgecc::interp::run(&g, &inputs).unwrap();
        PassManager::default_pipeline().run(&mut g).unwrap();
        let lowered = edgecc::lower::lower(&g, "epilogue").unwrap();
        let names: Vec<&str> = lowered.program.kernels.iter().map(|k| k.name()).collect();
        assert_eq!(names, kernels, "residual {rs:?}");
        let Some(Kernel::Gemm {
            batch: got_batch,
            bias,
            residual,
            act,
            ..
        }) = lowered.program.kernels.last()
        else {
            panic!("residual {rs:?}: no gemm");
        };
        assert_eq!(*got_batch, batch, "residual {rs:?}");
        assert!(bias.is_some() && residual.is_some(), "residual {rs:?}");
        assert_eq!(*act, Activation::Gelu { tanh: false });
        let got = exec(&lowered.program, &inputs);
        let err = common::max_rel_err(&got[0], want[0].as_f32().unwrap());
        assert!(err <= 1e-5, "residual {rs:?}: max relative error {err:e}");
    }
}

/// FusedMatMul built directly, in forms the pass does not make from exporters' graphs
/// yet: batched operands transposed (`trans_a` stops the batch fold), alpha, HardSwish,
/// a residual broadcast along rows. The executor computes what the interpreter does.
#[test]
fn fused_matmul_transposed_batched_operands() {
    use edgecc::ir::{Act, DType, Graph, Op, Tensor};
    let vals = |n: usize, s: usize| -> Vec<f32> {
        (0..n)
            .map(|j| ((j * 5 + s * 3) % 11) as f32 * 0.2 - 1.0)
            .collect()
    };
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let (m, k, n) = (5, 7, 6);
        let sa = if trans_a { [3, k, m] } else { [3, m, k] };
        let sb = if trans_b { [n, k] } else { [k, n] };
        let mut g = Graph::new("fused");
        let a = g.add_input("a", DType::F32, sa.to_vec());
        let r = g.add_input("r", DType::F32, vec![m, 1]);
        g.inputs.extend([a, r]);
        let b = g.add_const("b", Tensor::f32(sb.to_vec(), vals(k * n, 1)));
        let bias = g.add_const("bias", Tensor::f32(vec![n], vals(n, 2)));
        let op = Op::FusedMatMul {
            alpha: -0.5,
            trans_a,
            trans_b,
            bias: true,
            residual: true,
            act: Act::HardSwish,
        };
        let (_, y) = g.add_node("fused", op, vec![a, b, bias, r]).unwrap();
        assert_eq!(g.value(y[0]).shape, vec![3, m, n]);
        g.outputs.push(y[0]);
        let inputs = [
            Tensor::f32(sa.to_vec(), vals(3 * m * k, 3)),
            Tensor::f32(vec![m, 1], vals(m, 4)),
        ];
        let want = edgecc::interp::run(&g, &inputs).unwrap();
        let lowered = edgecc::lower::lower(&g, "fused").unwrap();
        let gemms = lowered
            .program
            .kernels
            .iter()
            .filter(|k| k.name() == "gemm")
            .count();
        assert_eq!(gemms, 1, "trans {trans_a} {trans_b}");
        let got = exec(&lowered.program, &inputs);
        let err = common::max_rel_err(&got[0], want[0].as_f32().unwrap());
        assert!(
            err <= 1e-5,
            "trans {trans_a} {trans_b}: max relative error {err:e}"
        );
    }
}

/// LayerNormalization lowers to one `layer_norm` kernel: the opset-13 decomposition (made
/// one LayerNorm by the default pipeline), the native op with its Mean and InvStdDev
/// outputs over two normalized dims, and runtime scale and bias. The executor computes
/// what the interpreter does; a scale broadcast over only part of the normalized dims is
/// refused with an error, not lowered wrongly.
#[test]
fn layer_norm_is_one_kernel() {
    use edgecc::ir::{DType, Tensor};
    let decomposed = "graph g {
      input x: f32[2,5,7]
      const two: f32[] = [2]
      const eps: f32[] = [1e-5]
      const gamma: f32[7] = random(1)
      const beta: f32[7] = random(2)
      m: f32[2,5,1] = ReduceMean{axes=[-1] keepdims}(x)  # mean
      d: f32[2,5,7] = Sub(x, m)  # sub
      q: f32[2,5,7] = Pow(d, two)  # pow
      v: f32[2,5,1] = ReduceMean{axes=[-1] keepdims}(q)  # var
      e: f32[2,5,1] = Add(v, eps)  # add_eps
      r: f32[2,5,1] = Sqrt(e)  # sqrt
      n: f32[2,5,7] = Div(d, r)  # div
      s: f32[2,5,7] = Mul(n, gamma)  # mul_gamma
      y: f32[2,5,7] = Add(s, beta)  # add_beta
      output y
    }";
    let stats = "graph g {
      input x: f32[3,2,5]
      const gamma: f32[2,5] = random(3)
      const beta: f32[2,5] = random(4)
      y: f32[3,2,5], mean: f32[3,1,1], inv: f32[3,1,1] = LayerNormalization{axis=1 epsilon=0.01 stats}(x, gamma, beta)  # ln
      output y, mean, inv
    }";
    let runtime = "graph g {
      input x: f32[4,9]
      input gamma: f32[9]
      input beta: f32[1]
      y: f32[4,9] = LayerNormalization{axis=-1 epsilon=1e-05}(x, gamma, beta)  # ln
      output y
    }";
    for (name, text) in [
        ("decomposed", decomposed),
        ("stats", stats),
        ("runtime", runtime),
    ] {
        let mut g = edgecc::ir::parse::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs: Vec<Tensor> = g
            .inputs
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let shape = g.value(v).shape.clone();
                edgecc::ir::parse::random_tensor(DType::F32, shape, 10 + i as u64).unwrap()
            })
            .collect();
        let want = edgecc::interp::run(&g, &inputs).unwrap();
        PassManager::default_pipeline().run(&mut g).unwrap();
        let lowered = edgecc::lower::lower(&g, name).unwrap();
        let names: Vec<&str> = lowered.program.kernels.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["layer_norm"], "{name}");
        let got = exec(&lowered.program, &inputs);
        assert_eq!(got.len(), want.len(), "{name}");
        for (o, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = common::max_rel_err(g, w.as_f32().unwrap());
            assert!(err <= 1e-5, "{name} output {o}: max relative error {err:e}");
        }
    }
    let partial = "graph g {
      input x: f32[4,2,3]
      const gamma: f32[3] = random(1)
      y: f32[4,2,3] = LayerNormalization{axis=1 epsilon=1e-05}(x, gamma)  # ln
      output y
    }";
    let g = edgecc::ir::parse::parse(partial).unwrap();
    let Err(e) = edgecc::lower::lower(&g, "partial") else {
        panic!("a partially broadcast scale must be refused");
    };
    assert!(format!("{e:?}").contains("partially broadcast"), "{e:?}");
}

//! What the pass unit tests share: seeded random tensors and the interpreter check that
//! a pass did not change what a graph computes.

use super::Pass;
use crate::interp;
use crate::ir::{Graph, Tensor};

/// `n` values uniform in [-1, 1) from a fixed linear congruential sequence, never exactly
/// zero (the pruning tests place their zeros by hand and rely on every other weight being
/// non-zero).
pub fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if v == 0.0 { 0.5 } else { v }
        })
        .collect()
}

pub fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::f32(shape.to_vec(), random_values(shape.iter().product(), seed))
}

/// Runs `pass` on `g`, verifies the result, and checks that the interpreter's outputs on
/// seeded random inputs agree before and after within `rel` (relative to the largest
/// output magnitude). Returns the pass summary.
pub fn run_checked(pass: &dyn Pass, g: &mut Graph, rel: f32) -> String {
    let inputs: Vec<Tensor> = g
        .inputs
        .iter()
        .enumerate()
        .map(|(i, &v)| random(&g.value(v).shape, 17 + i as u64))
        .collect();
    let before = interp::run(g, &inputs).expect("interpreter runs before the pass");
    let summary = pass.run(g).expect("pass runs");
    crate::ir::verify::verify(g).expect("graph verifies after the pass");
    let after = interp::run(g, &inputs).expect("interpreter runs after the pass");
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.shape, a.shape);
        let (b, a) = (b.as_f32().expect("f32"), a.as_f32().expect("f32"));
        let scale = b.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
        for (x, y) in b.iter().zip(a) {
            assert!((x - y).abs() <= rel * scale, "{x} vs {y} (scale {scale})");
        }
    }
    summary
}

/// [`run_checked`] on a copy of `g` at 1e-5: the rewritten graph and the pass summary.
pub fn run_on_copy(g: &Graph, pass: &dyn Pass) -> (Graph, String) {
    let mut copy = g.clone();
    let summary = run_checked(pass, &mut copy, 1e-5);
    (copy, summary)
}

/// The op names of the graph's nodes in topological order.
pub fn ops(g: &Graph) -> Vec<String> {
    g.topo_order()
        .into_iter()
        .map(|n| g.node(n).op.name().to_string())
        .collect()
}

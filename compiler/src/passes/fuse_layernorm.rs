//! LayerNorm fusion: the decomposed layer normalization that exporters write for opset
//! < 17 becomes one `LayerNormalization`.
//!
//! The pattern, over trailing axes `A` of `x` (ReduceMean with `keepdims`):
//!
//! ```text
//! m = ReduceMean_A(x)           d = Sub(x, m)
//! q = Pow(d, 2) | Mul(d, d)     v = ReduceMean_A(q)
//! e = Add(v, ε)                 r = Sqrt(e)
//! n = Div(d, r) | Mul(d, Reciprocal(r))
//! y = Add(Mul(n, γ), β)         (γ and β optional constants, either operand order)
//! ```
//!
//! is by definition `LayerNorm{axis = rank − |A|, ε}(x, γ, β)` with γ = 1 when absent.
//! Every intermediate must be read only inside the pattern (`d` by `q` and `n`, the
//! others once) and not be a graph output; `ε`, `2` are splat constants (within 1e-6
//! relative). γ and β must vary only over the normalized dims; they are materialized at
//! the normalized shape so the lowering reads them with one stride. The fused op is the
//! same arithmetic with one reduction pass fewer over `d` in the interpreter's f64
//! accumulation, so results agree to f32 rounding.

use super::Pass;
use super::pattern::{constant_value, is_constant, other_operand, producer_if, single_use};
use crate::Error;
use crate::interp::ops::broadcast_strides;
use crate::ir::{Binary, DType, Graph, NodeIndex, Op, ReduceKind, Tensor, Unary, ValueId};

pub struct FuseLayerNorm;

impl Pass for FuseLayerNorm {
    fn name(&self) -> &'static str {
        "fuse-layernorm"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let mut fused = 0;
        for n in g.topo_order() {
            if g.node_indices().all(|m| m != n) {
                continue;
            }
            if let Some(m) = match_layernorm(g, n) {
                apply(g, m)?;
                fused += 1;
            }
        }
        Ok(format!("fused {fused} LayerNorms"))
    }
}

struct LayerNormMatch {
    x: ValueId,
    axis: usize,
    epsilon: f32,
    gamma: Option<ValueId>,
    beta: Option<ValueId>,
    /// The pattern's result and every node that computes it (removed after the rewrite).
    out: ValueId,
    nodes: Vec<NodeIndex>,
}

/// The trailing-axis count of a keepdims ReduceMean over `rank` dims, if its axes are
/// exactly the last few.
fn trailing_mean_axes(op: &Op, rank: usize) -> Option<usize> {
    let Op::Reduce {
        kind: ReduceKind::Mean,
        axes: Some(axes),
        keepdims: true,
    } = op
    else {
        return None;
    };
    let mut norm: Vec<usize> = axes
        .iter()
        .map(|&a| if a < 0 { a + rank as i64 } else { a })
        .map(|a| usize::try_from(a).ok().filter(|&a| a < rank))
        .collect::<Option<_>>()?;
    norm.sort_unstable();
    norm.dedup();
    let k = norm.len();
    (k > 0 && norm == (rank - k..rank).collect::<Vec<_>>()).then_some(k)
}

/// The node reading `v` (which must be its only reader) if its op satisfies `want`.
fn sole_reader_if(g: &Graph, v: ValueId, want: impl Fn(&Op) -> bool) -> Option<NodeIndex> {
    if !single_use(g, v) {
        return None;
    }
    let n = g.consumers(v)[0];
    want(&g.node(n).op).then_some(n)
}

fn match_layernorm(g: &Graph, mean_node: NodeIndex) -> Option<LayerNormMatch> {
    let mn = g.node(mean_node);
    let x = *mn.inputs.first()?;
    let xshape = g.value(x).shape.clone();
    if g.value(x).dtype != DType::F32 {
        return None;
    }
    let k = trailing_mean_axes(&mn.op, xshape.len())?;
    let m = mn.outputs[0];
    // d = x - m
    let sub = sole_reader_if(g, m, |op| *op == Op::Binary(Binary::Sub))?;
    if g.node(sub).inputs != [x, m] {
        return None;
    }
    let d = g.node(sub).outputs[0];
    if g.outputs.contains(&d) || g.value(d).shape != xshape {
        return None;
    }
    // d feeds exactly the square and the normalization.
    let readers = g.consumers(d);
    if readers.len() != 2 {
        return None;
    }
    let is_square = |n: NodeIndex| {
        let node = g.node(n);
        match node.op {
            Op::Binary(Binary::Pow) => node.inputs[0] == d && is_constant(g, node.inputs[1], 2.0),
            Op::Binary(Binary::Mul) => node.inputs == [d, d],
            _ => false,
        }
    };
    let (sq, norm) = match (is_square(readers[0]), is_square(readers[1])) {
        (true, false) => (readers[0], readers[1]),
        (false, true) => (readers[1], readers[0]),
        _ => return None,
    };
    let q = g.node(sq).outputs[0];
    let var_node = sole_reader_if(g, q, |op| trailing_mean_axes(op, xshape.len()) == Some(k))?;
    let v = g.node(var_node).outputs[0];
    let add_eps = sole_reader_if(g, v, |op| *op == Op::Binary(Binary::Add))?;
    let eps = constant_value(g, other_operand(g.node(add_eps), v)?)?;
    if !(0.0..1.0).contains(&eps) {
        return None;
    }
    let e = g.node(add_eps).outputs[0];
    let sqrt = sole_reader_if(g, e, |op| *op == Op::Unary(Unary::Sqrt))?;
    let r = g.node(sqrt).outputs[0];
    let mut nodes = vec![mean_node, sub, sq, var_node, add_eps, sqrt];
    // n = d / r, or d * (1 / r)
    let nn = g.node(norm);
    let normalized = match nn.op {
        Op::Binary(Binary::Div) if nn.inputs == [d, r] && single_use(g, r) => {
            nodes.push(norm);
            nn.outputs[0]
        }
        Op::Binary(Binary::Mul) => {
            let recip = other_operand(nn, d)?;
            let (rn, rnode) = producer_if(g, recip, |op| *op == Op::Unary(Unary::Reciprocal))?;
            if rnode.inputs != [r] || !single_use(g, r) || !single_use(g, recip) {
                return None;
            }
            nodes.extend([rn, norm]);
            nn.outputs[0]
        }
        _ => return None,
    };
    if g.value(normalized).shape != xshape {
        return None;
    }
    let mut out = normalized;
    // Optional affine tail: Mul(·, γ) then Add(·, β), constants varying only over the
    // normalized dims.
    let param = |node: NodeIndex, cur: ValueId| -> Option<ValueId> {
        let p = other_operand(g.node(node), cur)?;
        let t = g.konst(p)?;
        let fits = t.dtype == DType::F32
            && t.shape.len() <= xshape.len()
            && t.shape.iter().rev().skip(k).all(|&d| d == 1)
            && g.value(g.node(node).outputs[0]).shape == xshape;
        fits.then_some(p)
    };
    let mut gamma = None;
    let mut beta = None;
    if let Some(mul) = sole_reader_if(g, out, |op| *op == Op::Binary(Binary::Mul))
        && let Some(p) = param(mul, out)
    {
        gamma = Some(p);
        nodes.push(mul);
        out = g.node(mul).outputs[0];
    }
    if let Some(add) = sole_reader_if(g, out, |op| *op == Op::Binary(Binary::Add))
        && let Some(p) = param(add, out)
    {
        beta = Some(p);
        nodes.push(add);
        out = g.node(add).outputs[0];
    }
    Some(LayerNormMatch {
        x,
        axis: xshape.len() - k,
        epsilon: eps as f32,
        gamma,
        beta,
        out,
        nodes,
    })
}

/// `t` broadcast to the normalized `shape` (which it broadcasts to by the match's check).
fn materialize(t: &Tensor, shape: &[usize]) -> Tensor {
    let src = t.as_f32().expect("matched an f32 constant");
    if t.shape == shape {
        return t.clone();
    }
    // Dims before the normalized ones are all 1 (checked by the match): drop them.
    let own = &t.shape[t.shape.len().saturating_sub(shape.len())..];
    let st = broadcast_strides(own, shape);
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let mut rem = flat;
        let mut off = 0;
        for d in (0..shape.len()).rev() {
            off += (rem % shape[d]) * st[d];
            rem /= shape[d];
        }
        out.push(src[off]);
    }
    Tensor::f32(shape.to_vec(), out)
}

fn apply(g: &mut Graph, m: LayerNormMatch) -> Result<(), Error> {
    let norm_shape = g.value(m.x).shape[m.axis..].to_vec();
    let last = g.value(m.out).producer.expect("a node's output");
    let name = g.node(last).name.clone();
    let gamma = match m.gamma {
        Some(p) => {
            let t = materialize(g.konst(p).expect("constant"), &norm_shape);
            g.add_const(format!("{name}.gamma"), t)
        }
        None => {
            let ones = vec![1.0; norm_shape.iter().product()];
            g.add_const(
                format!("{name}.gamma"),
                Tensor::f32(norm_shape.clone(), ones),
            )
        }
    };
    let mut inputs = vec![m.x, gamma];
    if let Some(p) = m.beta {
        let t = materialize(g.konst(p).expect("constant"), &norm_shape);
        inputs.push(g.add_const(format!("{name}.beta"), t));
    }
    let op = Op::LayerNorm {
        axis: m.axis as i64,
        epsilon: m.epsilon,
        stats: false,
    };
    // The last node becomes the LayerNorm in place: its result keeps its value, name
    // and place in the schedule.
    g.set_op(last, op, inputs)?;
    for n in m.nodes.into_iter().filter(|&n| n != last) {
        g.remove_node(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{ops, random, run_checked};

    #[derive(Clone, Copy)]
    struct Form {
        mul_square: bool,
        reciprocal: bool,
        gamma: bool,
        beta: bool,
        axes: &'static [i64],
        pow: f32,
        /// γ and β as `[1, 1, 8]` instead of `[8]`.
        full_rank_params: bool,
    }

    const BERT: Form = Form {
        mul_square: false,
        reciprocal: false,
        gamma: true,
        beta: true,
        axes: &[-1],
        pow: 2.0,
        full_rank_params: false,
    };

    fn decomposed(f: Form) -> Graph {
        let mut g = Graph::new("t");
        let x = g.add_input("x", DType::F32, vec![2, 3, 8]);
        g.inputs.push(x);
        let mean = |g: &mut Graph, v, name: &str| {
            let op = Op::Reduce {
                kind: ReduceKind::Mean,
                axes: Some(f.axes.to_vec()),
                keepdims: true,
            };
            g.add_node(name, op, vec![v]).unwrap().1[0]
        };
        let bin = |g: &mut Graph, b, x, y, name: &str| {
            g.add_node(name, Op::Binary(b), vec![x, y]).unwrap().1[0]
        };
        let m = mean(&mut g, x, "mean");
        let d = bin(&mut g, Binary::Sub, x, m, "sub");
        let q = if f.mul_square {
            bin(&mut g, Binary::Mul, d, d, "sq")
        } else {
            let two = g.add_const("two", Tensor::f32(vec![], vec![f.pow]));
            bin(&mut g, Binary::Pow, d, two, "sq")
        };
        let v = mean(&mut g, q, "var");
        let eps = g.add_const("eps", Tensor::f32(vec![], vec![1e-12]));
        let e = bin(&mut g, Binary::Add, v, eps, "add_eps");
        let r = g
            .add_node("sqrt", Op::Unary(Unary::Sqrt), vec![e])
            .unwrap()
            .1[0];
        let mut y = if f.reciprocal {
            let inv = g
                .add_node("recip", Op::Unary(Unary::Reciprocal), vec![r])
                .unwrap()
                .1[0];
            bin(&mut g, Binary::Mul, inv, d, "norm")
        } else {
            bin(&mut g, Binary::Div, d, r, "norm")
        };
        let pshape: Vec<usize> = match (f.axes.len(), f.full_rank_params) {
            (2, _) => vec![3, 8],
            (_, true) => vec![1, 1, 8],
            _ => vec![8],
        };
        if f.gamma {
            let gm = g.add_const("gamma", random(&pshape, 3));
            y = bin(&mut g, Binary::Mul, gm, y, "mul_gamma");
        }
        if f.beta {
            let bt = g.add_const("beta", random(&pshape, 4));
            y = bin(&mut g, Binary::Add, y, bt, "add_beta");
        }
        g.outputs.push(y);
        g
    }

    #[test]
    fn fuses_the_exported_forms() {
        let forms = [
            BERT,
            Form {
                mul_square: true,
                reciprocal: true,
                ..BERT
            },
            Form {
                gamma: false,
                ..BERT
            },
            Form {
                gamma: false,
                beta: false,
                ..BERT
            },
            Form {
                axes: &[1, -1],
                ..BERT
            },
            Form {
                full_rank_params: true,
                ..BERT
            },
        ];
        for f in forms {
            let mut g = decomposed(f);
            let s = run_checked(&FuseLayerNorm, &mut g, 1e-5);
            assert_eq!(s, "fused 1 LayerNorms");
            assert_eq!(ops(&g), ["LayerNormalization"]);
        }
    }

    #[test]
    fn leaves_near_misses() {
        // Pow 4 is not a variance; axes [0] are not trailing.
        for f in [Form { pow: 4.0, ..BERT }, Form { axes: &[0], ..BERT }] {
            let mut g = decomposed(f);
            let before = ops(&g);
            let s = run_checked(&FuseLayerNorm, &mut g, 0.0);
            assert_eq!(s, "fused 0 LayerNorms");
            assert_eq!(ops(&g), before);
        }
    }

    #[test]
    fn leaves_a_pattern_whose_intermediate_is_an_output() {
        let mut g = decomposed(BERT);
        let d = g.node(g.topo_order()[1]).outputs[0];
        g.outputs.push(d);
        let s = run_checked(&FuseLayerNorm, &mut g, 0.0);
        assert_eq!(s, "fused 0 LayerNorms");
    }
}

//! GELU fusion: the elementwise expansions of GELU that exporters write become one
//! `Gelu` op, so the IR names the activation and later passes (the GEMM epilogue) can
//! treat it as one.
//!
//! Recognized, with every operand order of Add and Mul:
//!
//! ```text
//! erf:   a = Add(Erf(Div(x, √2) | Mul(x, 1/√2)), 1)
//! tanh:  a = Add(Tanh(Mul(√(2/π), Add(x, Mul(0.044715, x³)))), 1),
//!        x³ = Pow(x, 3) | Mul(Mul(x, x), x) | Mul(x, Mul(x, x))
//! then   y = Mul(Mul(x, a), 0.5) | Mul(x, Mul(a, 0.5)) | Mul(Mul(x, 0.5), a)
//! ```
//!
//! which is `Gelu{}(x)` resp. `Gelu{tanh}(x)` by definition. The constants must match
//! within 1e-6 relative (splats of any shape are fine as long as the result keeps `x`'s
//! shape); every intermediate must have its single reader inside the pattern and not be
//! a graph output. The fused op evaluates the same formula, so results agree to f32
//! rounding. Not recognized: `Div(·, 2)` for the half, and x·Φ(x) forms written with
//! other constants.

use super::Pass;
use super::pattern::{close, constant_value, is_constant, other_operand, producer, single_use};
use crate::Error;
use crate::ir::{Binary, DType, Graph, NodeIndex, Op, Unary, ValueId};

pub struct FuseGelu;

const SQRT_2: f64 = std::f64::consts::SQRT_2;
/// √(2/π), the tanh form's scale.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const CUBIC: f64 = 0.044715;

impl Pass for FuseGelu {
    fn name(&self) -> &'static str {
        "fuse-gelu"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let (mut erf, mut tanh) = (0, 0);
        for n in g.topo_order() {
            if g.node_indices().all(|m| m != n) {
                continue;
            }
            let m = match g.node(n).op {
                Op::Unary(Unary::Erf) => match_erf(g, n),
                Op::Unary(Unary::Tanh) => match_tanh(g, n),
                _ => None,
            };
            let Some(m) = m else {
                continue;
            };
            if m.tanh {
                tanh += 1;
            } else {
                erf += 1;
            }
            apply(g, m)?;
        }
        Ok(format!("fused {erf} erf GELUs, {tanh} tanh GELUs"))
    }
}

struct GeluMatch {
    x: ValueId,
    tanh: bool,
    out: ValueId,
    nodes: Vec<NodeIndex>,
}

fn is_op(g: &Graph, n: NodeIndex, op: Op) -> bool {
    g.node(n).op == op
}

const MUL: Op = Op::Binary(Binary::Mul);
const ADD: Op = Op::Binary(Binary::Add);

/// The single reader of `v` if it exists and `v` is not a graph output.
fn sole_reader(g: &Graph, v: ValueId) -> Option<NodeIndex> {
    single_use(g, v).then(|| g.consumers(v)[0])
}

/// The producer of `v` when `v` is read only there and its op is `op`.
fn inner(g: &Graph, v: ValueId, op: Op) -> Option<NodeIndex> {
    let (n, node) = producer(g, v)?;
    (node.op == op && single_use(g, v)).then_some(n)
}

fn match_erf(g: &Graph, erf: NodeIndex) -> Option<GeluMatch> {
    let t = g.node(erf).inputs[0];
    let scale = inner(g, t, Op::Binary(Binary::Div)).or_else(|| inner(g, t, MUL))?;
    let sn = g.node(scale);
    let x = match sn.op {
        Op::Binary(Binary::Div) => is_constant(g, sn.inputs[1], SQRT_2).then_some(sn.inputs[0])?,
        _ => {
            let [a, b] = sn.inputs[..] else { return None };
            if is_constant(g, b, 1.0 / SQRT_2) {
                a
            } else if is_constant(g, a, 1.0 / SQRT_2) {
                b
            } else {
                return None;
            }
        }
    };
    tail(g, x, erf, vec![scale, erf], false)
}

fn match_tanh(g: &Graph, th: NodeIndex) -> Option<GeluMatch> {
    let u = g.node(th).inputs[0];
    let scale = inner(g, u, MUL)?;
    let w = other_of_constant(g, scale, SQRT_2_OVER_PI)?;
    let add = inner(g, w, ADD)?;
    // One operand of the Add is x, the other 0.044715·x³.
    let [p, q] = g.node(add).inputs[..] else {
        return None;
    };
    for (x, z) in [(p, q), (q, p)] {
        let Some(cn) = inner(g, z, MUL) else {
            continue;
        };
        let Some(x3) = other_of_constant(g, cn, CUBIC) else {
            continue;
        };
        if let Some(cube) = cube_of(g, x3, x) {
            let mut nodes = vec![scale, add, cn, th];
            nodes.extend(cube);
            return tail(g, x, th, nodes, true);
        }
    }
    None
}

/// The non-constant operand of the Mul `n` whose other operand is the constant `c`.
fn other_of_constant(g: &Graph, n: NodeIndex, c: f64) -> Option<ValueId> {
    let [a, b] = g.node(n).inputs[..] else {
        return None;
    };
    if is_constant(g, b, c) {
        Some(a)
    } else if is_constant(g, a, c) {
        Some(b)
    } else {
        None
    }
}

/// The nodes computing `v = x³` as Pow(x, 3) or a product of three x's.
fn cube_of(g: &Graph, v: ValueId, x: ValueId) -> Option<Vec<NodeIndex>> {
    if let Some(pw) = inner(g, v, Op::Binary(Binary::Pow)) {
        let node = g.node(pw);
        return (node.inputs[0] == x && is_constant(g, node.inputs[1], 3.0)).then(|| vec![pw]);
    }
    let outer = inner(g, v, MUL)?;
    let sq = other_operand(g.node(outer), x)?;
    let sqn = inner(g, sq, MUL)?;
    (g.node(sqn).inputs == [x, x]).then(|| vec![outer, sqn])
}

/// Matches `Add(f, 1)` after the erf/tanh node `f` and the product with `x` and 0.5.
fn tail(
    g: &Graph,
    x: ValueId,
    f: NodeIndex,
    mut nodes: Vec<NodeIndex>,
    tanh: bool,
) -> Option<GeluMatch> {
    if g.value(x).dtype != DType::F32 {
        return None;
    }
    let fv = g.node(f).outputs[0];
    let add1 = sole_reader(g, fv).filter(|&n| is_op(g, n, ADD))?;
    if !is_constant(g, other_operand(g.node(add1), fv)?, 1.0) {
        return None;
    }
    let a = g.node(add1).outputs[0];
    let m1 = sole_reader(g, a).filter(|&n| is_op(g, n, MUL))?;
    nodes.extend([add1, m1]);
    let o = other_operand(g.node(m1), a)?;
    let p = g.node(m1).outputs[0];
    let half = |v: ValueId| constant_value(g, v).is_some_and(|c| close(c, 0.5));
    let out = if o == x || half(o) {
        // (x·a)·0.5 or (0.5·a)·x
        let m2 = sole_reader(g, p).filter(|&n| is_op(g, n, MUL))?;
        let r = other_operand(g.node(m2), p)?;
        let ok = if o == x { half(r) } else { r == x };
        if !ok {
            return None;
        }
        nodes.push(m2);
        g.node(m2).outputs[0]
    } else {
        // (x·0.5)·a
        let hn = inner(g, o, MUL)?;
        let [s, t] = g.node(hn).inputs[..] else {
            return None;
        };
        if !((s == x && half(t)) || (t == x && half(s))) {
            return None;
        }
        nodes.push(hn);
        p
    };
    (g.value(out).shape == g.value(x).shape).then_some(GeluMatch {
        x,
        tanh,
        out,
        nodes,
    })
}

/// Turns the pattern's last node into the Gelu (in place, so the result keeps its value,
/// name and place in the schedule) and removes the rest.
fn apply(g: &mut Graph, m: GeluMatch) -> Result<(), Error> {
    let last = g.value(m.out).producer.expect("a node's output");
    g.set_op(last, Op::Gelu { tanh: m.tanh }, vec![m.x])?;
    for n in m.nodes.into_iter().filter(|&n| n != last) {
        g.remove_node(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Tensor;
    use crate::passes::testing::{ops, run_checked};

    /// How the half and the operand orders are written.
    #[derive(Clone, Copy)]
    enum Product {
        XaThenHalf,
        HalfAThenX,
        XHalfThenA,
    }

    struct B {
        g: Graph,
        x: ValueId,
    }

    impl B {
        fn new() -> B {
            let mut g = Graph::new("t");
            let x = g.add_input("x", DType::F32, vec![3, 7]);
            g.inputs.push(x);
            B { g, x }
        }
        fn c(&mut self, v: f32) -> ValueId {
            self.g
                .add_const(format!("c{v}"), Tensor::f32(vec![], vec![v]))
        }
        fn op(&mut self, op: Op, ins: Vec<ValueId>) -> ValueId {
            let n = format!("n{}", self.g.node_count());
            self.g.add_node(n, op, ins).unwrap().1[0]
        }
        fn bin(&mut self, b: Binary, x: ValueId, y: ValueId) -> ValueId {
            self.op(Op::Binary(b), vec![x, y])
        }
        /// `x·(1 + f)/2`-style tail over `f`; `swap` commutes every binary op.
        fn tail(&mut self, f: ValueId, p: Product, swap: bool) -> ValueId {
            let sw = |a, b| if swap { (b, a) } else { (a, b) };
            let one = self.c(1.0);
            let (l, r) = sw(f, one);
            let a = self.bin(Binary::Add, l, r);
            let half = self.c(0.5);
            let x = self.x;
            match p {
                Product::XaThenHalf => {
                    let (l, r) = sw(x, a);
                    let t = self.bin(Binary::Mul, l, r);
                    let (l, r) = sw(t, half);
                    self.bin(Binary::Mul, l, r)
                }
                Product::HalfAThenX => {
                    let (l, r) = sw(a, half);
                    let t = self.bin(Binary::Mul, l, r);
                    let (l, r) = sw(x, t);
                    self.bin(Binary::Mul, l, r)
                }
                Product::XHalfThenA => {
                    let (l, r) = sw(x, half);
                    let t = self.bin(Binary::Mul, l, r);
                    let (l, r) = sw(t, a);
                    self.bin(Binary::Mul, l, r)
                }
            }
        }
    }

    fn erf_gelu(div: bool, c: f32, p: Product, swap: bool) -> Graph {
        let mut b = B::new();
        let k = b.c(c);
        let t = if div {
            b.bin(Binary::Div, b.x, k)
        } else if swap {
            b.bin(Binary::Mul, k, b.x)
        } else {
            b.bin(Binary::Mul, b.x, k)
        };
        let e = b.op(Op::Unary(Unary::Erf), vec![t]);
        let y = b.tail(e, p, swap);
        b.g.outputs.push(y);
        b.g
    }

    fn tanh_gelu(pow: bool, cubic: f32, p: Product, swap: bool) -> Graph {
        let mut b = B::new();
        let x = b.x;
        let x3 = if pow {
            let three = b.c(3.0);
            b.bin(Binary::Pow, x, three)
        } else {
            let sq = b.bin(Binary::Mul, x, x);
            if swap {
                b.bin(Binary::Mul, x, sq)
            } else {
                b.bin(Binary::Mul, sq, x)
            }
        };
        let c = b.c(cubic);
        let z = b.bin(Binary::Mul, c, x3);
        let w = if swap {
            b.bin(Binary::Add, z, x)
        } else {
            b.bin(Binary::Add, x, z)
        };
        let k = b.c(0.797_884_6);
        let u = b.bin(Binary::Mul, w, k);
        let t = b.op(Op::Unary(Unary::Tanh), vec![u]);
        let y = b.tail(t, p, swap);
        b.g.outputs.push(y);
        b.g
    }

    const PRODUCTS: [Product; 3] = [
        Product::XaThenHalf,
        Product::HalfAThenX,
        Product::XHalfThenA,
    ];

    #[test]
    fn fuses_every_erf_form() {
        for p in PRODUCTS {
            for swap in [false, true] {
                for (div, c) in [
                    (true, std::f32::consts::SQRT_2),
                    (false, std::f32::consts::FRAC_1_SQRT_2),
                ] {
                    let mut g = erf_gelu(div, c, p, swap);
                    let s = run_checked(&FuseGelu, &mut g, 1e-5);
                    assert_eq!(s, "fused 1 erf GELUs, 0 tanh GELUs");
                    assert_eq!(ops(&g), ["Gelu"]);
                    assert_eq!(g.node(g.topo_order()[0]).op, Op::Gelu { tanh: false });
                }
            }
        }
    }

    #[test]
    fn fuses_every_tanh_form() {
        for p in PRODUCTS {
            for swap in [false, true] {
                for pow in [true, false] {
                    let mut g = tanh_gelu(pow, 0.044715, p, swap);
                    let s = run_checked(&FuseGelu, &mut g, 1e-5);
                    assert_eq!(s, "fused 0 erf GELUs, 1 tanh GELUs");
                    assert_eq!(ops(&g), ["Gelu"]);
                }
            }
        }
    }

    #[test]
    fn leaves_wrong_constants() {
        let mut g = erf_gelu(true, 1.5, Product::XaThenHalf, false);
        assert_eq!(
            run_checked(&FuseGelu, &mut g, 0.0),
            "fused 0 erf GELUs, 0 tanh GELUs"
        );
        let mut g = tanh_gelu(true, 0.05, Product::XaThenHalf, false);
        assert_eq!(
            run_checked(&FuseGelu, &mut g, 0.0),
            "fused 0 erf GELUs, 0 tanh GELUs"
        );
    }

    #[test]
    fn leaves_a_pattern_whose_intermediate_is_read_elsewhere() {
        let mut g = erf_gelu(true, std::f32::consts::SQRT_2, Product::XaThenHalf, false);
        // The Erf's output also leaves the graph.
        let erf = g
            .node_indices()
            .find(|&n| g.node(n).op == Op::Unary(Unary::Erf))
            .unwrap();
        g.outputs.push(g.node(erf).outputs[0]);
        assert_eq!(
            run_checked(&FuseGelu, &mut g, 0.0),
            "fused 0 erf GELUs, 0 tanh GELUs"
        );
    }
}

//! The QOperator format, by expansion: each quantized operator onnxruntime's quantizer
//! writes (`QLinearConv`, `QLinearMatMul` and the `com.microsoft` ops `QLinearAdd`,
//! `QGemm`, `QLinearGlobalAveragePool`...) becomes the nodes it stands for,
//! `DequantizeLinear` of each quantized input → the float op → `QuantizeLinear` into the
//! output's scale and zero point. A QOperator model then imports as the QDQ model of the
//! same network would, so one requantization pass serves both formats.
//!
//! The expansion is the ops' definition (ContribOperators.md, Operators.md): each computes
//! "dequantize, compute in float, requantize", which onnxruntime's kernels approximate
//! with integer arithmetic and a float (or fixed-point) output multiplier. Biases are
//! int32 with scale `x_scale · w_scale` and zero point 0, so they dequantize with a scale
//! made by a `Mul` of the two scale inputs (folded at import when both are constants).
//!
//! Expanded nodes are named `<node>/<step>` (`conv1_quant/dequantize_x`,
//! `conv1_quant/conv`, `conv1_quant/quantize`), and so are their intermediate values; the
//! last node writes the original output, so the rest of the model is untouched.

use onnx_protobuf::{AttributeProto, NodeProto, attribute_proto::AttributeType};

use super::attrs::Attrs;
use crate::ir::DType;

/// The QOperator ops expanded here, as `(domain, op_type)`; `""` is the default domain.
pub const QOPERATOR_OPS: &[(&str, &str)] = &[
    ("", "QLinearConv"),
    ("", "QLinearMatMul"),
    ("com.microsoft", "QGemm"),
    ("com.microsoft", "QLinearAdd"),
    ("com.microsoft", "QLinearAveragePool"),
    ("com.microsoft", "QLinearConcat"),
    ("com.microsoft", "QLinearGlobalAveragePool"),
    ("com.microsoft", "QLinearLeakyRelu"),
    ("com.microsoft", "QLinearMul"),
    ("com.microsoft", "QLinearSigmoid"),
    ("com.microsoft", "QLinearSoftmax"),
];

/// `node` expanded into default-domain nodes when it is a QOperator op: `None` when it is
/// not one, `Some(Err(reason))` when it is one this importer cannot take. `name` is the
/// node's name (or the importer's stand-in for an unnamed node), `opset` the model's
/// default opset, `type_of` the dtype and rank of an already imported value.
pub fn expand(
    node: &NodeProto,
    name: &str,
    opset: i64,
    type_of: &dyn Fn(&str) -> Option<(DType, usize)>,
) -> Option<Result<Vec<NodeProto>, String>> {
    let domain = match node.domain.as_str() {
        "ai.onnx" => "",
        d => d,
    };
    if !QOPERATOR_OPS.contains(&(domain, node.op_type.as_str())) {
        return None;
    }
    let mut e = Expansion {
        node,
        base: name,
        type_of,
        out: Vec::new(),
    };
    Some(e.run(opset).map(|()| e.out))
}

struct Expansion<'a> {
    node: &'a NodeProto,
    base: &'a str,
    type_of: &'a dyn Fn(&str) -> Option<(DType, usize)>,
    out: Vec<NodeProto>,
}

fn attr_ints(name: &str, v: Vec<i64>) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v;
    a
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

impl Expansion<'_> {
    /// Input `i`, or `""` when absent (optional inputs).
    fn input(&self, i: usize) -> &str {
        self.node.input.get(i).map(String::as_str).unwrap_or("")
    }

    fn required(&self, i: usize, what: &str) -> Result<String, String> {
        match self.input(i) {
            "" => Err(format!("input {i} ({what}) is required")),
            s => Ok(s.to_string()),
        }
    }

    /// The node's attributes named in `names`, copied onto an expanded node.
    fn copy_attrs(&self, names: &[&str]) -> Vec<AttributeProto> {
        self.node
            .attribute
            .iter()
            .filter(|a| names.contains(&a.name.as_str()))
            .cloned()
            .collect()
    }

    /// Adds `<base>/<step>` writing `outs` (default: one value named like the node).
    fn push(
        &mut self,
        step: &str,
        op: &str,
        ins: &[&str],
        outs: Option<&str>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let name = format!("{}/{step}", self.base);
        let out = outs.map_or_else(|| name.clone(), str::to_string);
        let mut n = NodeProto::new();
        n.name = name;
        n.op_type = op.into();
        n.input = ins.iter().map(|s| s.to_string()).collect();
        n.output = vec![out.clone()];
        n.attribute = attrs;
        self.out.push(n);
        out
    }

    fn constant(&mut self, step: &str, v: f32) -> String {
        self.push(
            step,
            "Constant",
            &[],
            None,
            vec![attr_float("value_float", v)],
        )
    }

    /// `DequantizeLinear(x, scale, zp)` (zp may be absent) along `axis` for per-channel
    /// parameters.
    fn dequantize(&mut self, what: &str, x: &str, scale: &str, zp: &str, axis: i64) -> String {
        let ins: Vec<&str> = if zp.is_empty() {
            vec![x, scale]
        } else {
            vec![x, scale, zp]
        };
        self.push(
            &format!("dequantize_{what}"),
            "DequantizeLinear",
            &ins,
            None,
            vec![attr_int("axis", axis)],
        )
    }

    /// `QuantizeLinear(y, scale, zp)` into the node's output. Without a zero point, the
    /// output has the dtype of the node's quantized input `like` (the contrib ops' `T`).
    fn quantize(&mut self, y: &str, scale: &str, zp: &str, like: &str) -> Result<(), String> {
        let out = self
            .node
            .output
            .first()
            .filter(|o| !o.is_empty())
            .cloned()
            .ok_or("the output is missing")?;
        let (ins, attrs) = if zp.is_empty() {
            // An input that is not imported (poisoned by an unsupported producer) makes
            // this node fail on its own; u8 is only a placeholder then.
            let to = (self.type_of)(like).map_or(DType::U8, |t| t.0);
            (
                vec![y, scale],
                vec![attr_int("output_dtype", i64::from(to.onnx()))],
            )
        } else {
            (vec![y, scale, zp], vec![])
        };
        self.push("quantize", "QuantizeLinear", &ins, Some(&out), attrs);
        Ok(())
    }

    /// The bias scale `a_scale · b_scale` (per channel when either is).
    fn product(&mut self, step: &str, a: &str, b: &str) -> String {
        self.push(step, "Mul", &[a, b], None, vec![])
    }

    fn run(&mut self, opset: i64) -> Result<(), String> {
        let node = self.node;
        if node.output.len() != 1 {
            return Err(format!("expects 1 output, got {}", node.output.len()));
        }
        let a = Attrs::new(node);
        match node.op_type.as_str() {
            "QLinearConv" => {
                let x = self.required(0, "x")?;
                let w = self.required(3, "w")?;
                let (xs, xz) = (self.required(1, "x_scale")?, self.input(2).to_string());
                let xf = self.dequantize("x", &x, &xs, &xz, 1);
                let ws = self.required(4, "w_scale")?;
                let wz = self.input(5).to_string();
                let wf = self.dequantize("w", &w, &ws, &wz, 0);
                let mut ins = vec![xf, wf];
                if !self.input(8).is_empty() {
                    let b = self.input(8).to_string();
                    let bs = self.product("bias_scale", &xs, &ws);
                    ins.push(self.dequantize("bias", &b, &bs, "", 0));
                }
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                let attrs = self.copy_attrs(&[
                    "auto_pad",
                    "dilations",
                    "group",
                    "kernel_shape",
                    "pads",
                    "strides",
                ]);
                let y = self.push("conv", "Conv", &ins, None, attrs);
                let (ys, yz) = (self.required(6, "y_scale")?, self.input(7).to_string());
                self.quantize(&y, &ys, &yz, &x)
            }
            "QLinearMatMul" => {
                let x = self.required(0, "a")?;
                let (as_, az) = (self.required(1, "a_scale")?, self.input(2).to_string());
                let b = self.required(3, "b")?;
                let (bs, bz) = (self.required(4, "b_scale")?, self.input(5).to_string());
                // Per-row scales of A and per-column scales of B (1-D, one per row/column).
                let af = self.dequantize("a", &x, &as_, &az, -2);
                let bf = self.dequantize("b", &b, &bs, &bz, -1);
                let y = self.push("matmul", "MatMul", &[&af, &bf], None, vec![]);
                let (ys, yz) = (self.required(6, "y_scale")?, self.input(7).to_string());
                self.quantize(&y, &ys, &yz, &x)
            }
            "QGemm" => {
                let x = self.required(0, "A")?;
                let (as_, az) = (self.required(1, "a_scale")?, self.input(2).to_string());
                let b = self.required(3, "B")?;
                let (bs, bz) = (self.required(4, "b_scale")?, self.input(5).to_string());
                let trans_b = a.int("transB")?.unwrap_or(0) != 0;
                let alpha = a.float("alpha")?.unwrap_or(1.0);
                let af = self.dequantize("a", &x, &as_, &az, 0);
                // Per-column scales of B' (its rows when transposed).
                let bf = self.dequantize("b", &b, &bs, &bz, if trans_b { 0 } else { 1 });
                let mut ins = vec![af, bf];
                if !self.input(6).is_empty() {
                    // C is int32 at scale alpha · a_scale · b_scale: dequantized at
                    // a_scale · b_scale, then scaled by beta = alpha.
                    let c = self.input(6).to_string();
                    let cs = self.product("bias_scale", &as_, &bs);
                    ins.push(self.dequantize("bias", &c, &cs, "", -1));
                }
                let mut attrs = self.copy_attrs(&["transA", "transB"]);
                attrs.push(attr_float("alpha", alpha));
                attrs.push(attr_float("beta", alpha));
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                if self.input(7).is_empty() {
                    // No y_scale: the output is the float product.
                    let out = node.output[0].clone();
                    self.push("gemm", "Gemm", &ins, Some(&out), attrs);
                    return Ok(());
                }
                let y = self.push("gemm", "Gemm", &ins, None, attrs);
                let (ys, yz) = (self.input(7).to_string(), self.input(8).to_string());
                self.quantize(&y, &ys, &yz, &x)
            }
            "QLinearAdd" | "QLinearMul" => {
                let x = self.required(0, "A")?;
                let (as_, az) = (self.required(1, "A_scale")?, self.input(2).to_string());
                let b = self.required(3, "B")?;
                let (bs, bz) = (self.required(4, "B_scale")?, self.input(5).to_string());
                let af = self.dequantize("a", &x, &as_, &az, 1);
                let bf = self.dequantize("b", &b, &bs, &bz, 1);
                let (step, op) = if node.op_type == "QLinearAdd" {
                    ("add", "Add")
                } else {
                    ("mul", "Mul")
                };
                let y = self.push(step, op, &[&af, &bf], None, vec![]);
                let (ys, yz) = (self.required(6, "C_scale")?, self.input(7).to_string());
                self.quantize(&y, &ys, &yz, &x)
            }
            "QLinearSigmoid" | "QLinearLeakyRelu" | "QLinearSoftmax" => {
                let x = self.required(0, "X")?;
                let (xs, xz) = (self.required(1, "X_scale")?, self.input(2).to_string());
                let xf = self.dequantize("x", &x, &xs, &xz, 1);
                let y = match node.op_type.as_str() {
                    "QLinearSigmoid" => self.push("sigmoid", "Sigmoid", &[&xf], None, vec![]),
                    "QLinearLeakyRelu" => {
                        // LeakyRelu(x) = x < 0 ? alpha · x : x.
                        let alpha = a.float("alpha")?.unwrap_or(0.01);
                        let zero = self.constant("zero", 0.0);
                        let k = self.constant("alpha", alpha);
                        let neg = self.push("is_negative", "Less", &[&xf, &zero], None, vec![]);
                        let scaled = self.push("scaled", "Mul", &[&xf, &k], None, vec![]);
                        self.push("leaky_relu", "Where", &[&neg, &scaled, &xf], None, vec![])
                    }
                    _ => self.softmax(&xf, &a, opset)?,
                };
                let (ys, yz) = (self.required(3, "Y_scale")?, self.input(4).to_string());
                self.quantize(&y, &ys, &yz, &x)
            }
            "QLinearAveragePool" | "QLinearGlobalAveragePool" => {
                let x = self.required(0, "X")?;
                let (xs, xz) = (self.required(1, "x_scale")?, self.input(2).to_string());
                let channels_last = a.int("channels_last")?.unwrap_or(0) != 0;
                let mut xf = self.dequantize("x", &x, &xs, &xz, if channels_last { -1 } else { 1 });
                let rank = if channels_last {
                    let rank = (self.type_of)(&x)
                        .map(|t| t.1)
                        .filter(|&r| r >= 3)
                        .ok_or("channels_last needs an input of known rank >= 3")?;
                    // NHWC → NCHW for the pool, and back after it.
                    let mut to_first: Vec<i64> = vec![0, rank as i64 - 1];
                    to_first.extend(1..rank as i64 - 1);
                    xf = self.push(
                        "to_channels_first",
                        "Transpose",
                        &[&xf],
                        None,
                        vec![attr_ints("perm", to_first)],
                    );
                    Some(rank)
                } else {
                    None
                };
                let mut y = if node.op_type == "QLinearGlobalAveragePool" {
                    self.push(
                        "global_average_pool",
                        "GlobalAveragePool",
                        &[&xf],
                        None,
                        vec![],
                    )
                } else {
                    let attrs = self.copy_attrs(&[
                        "auto_pad",
                        "ceil_mode",
                        "count_include_pad",
                        "dilations",
                        "kernel_shape",
                        "pads",
                        "strides",
                    ]);
                    self.push("average_pool", "AveragePool", &[&xf], None, attrs)
                };
                if let Some(rank) = rank {
                    let mut to_last: Vec<i64> = vec![0];
                    to_last.extend(2..rank as i64);
                    to_last.push(1);
                    y = self.push(
                        "to_channels_last",
                        "Transpose",
                        &[&y],
                        None,
                        vec![attr_ints("perm", to_last)],
                    );
                }
                let (ys, yz) = (self.required(3, "y_scale")?, self.input(4).to_string());
                self.quantize(&y, &ys, &yz, &x)
            }
            "QLinearConcat" => {
                let (ys, yz) = (self.required(0, "Y_scale")?, self.input(1).to_string());
                let rest = node.input.len().saturating_sub(2);
                if rest == 0 || !rest.is_multiple_of(3) {
                    return Err(format!(
                        "expects Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) triples; got {} inputs",
                        node.input.len()
                    ));
                }
                let first = self.required(2, "X")?;
                let mut parts = Vec::new();
                for k in 0..rest / 3 {
                    let i = 2 + 3 * k;
                    let x = self.required(i, "X")?;
                    let xs = self.required(i + 1, "X_scale")?;
                    let xz = self.input(i + 2).to_string();
                    parts.push(self.dequantize(&k.to_string(), &x, &xs, &xz, 1));
                }
                let ins: Vec<&str> = parts.iter().map(String::as_str).collect();
                let y = self.push("concat", "Concat", &ins, None, self.copy_attrs(&["axis"]));
                self.quantize(&y, &ys, &yz, &first)
            }
            other => Err(format!("{other} has no expansion")),
        }
    }

    /// Softmax as of QLinearSoftmax's `opset` attribute: before 13 it flattens to 2-D at
    /// `axis` (default 1); from 13 on it works along `axis` (default -1). Imported with the
    /// model's opset, so the older form is spelled out when the two differ.
    fn softmax(&mut self, xf: &str, a: &Attrs<'_>, opset: i64) -> Result<String, String> {
        let op_opset = a.int("opset")?.unwrap_or(opset);
        let old = op_opset < 13;
        let axis = a.int("axis")?.unwrap_or(if old { 1 } else { -1 });
        if old == (opset < 13) {
            return Ok(self.push(
                "softmax",
                "Softmax",
                &[xf],
                None,
                vec![attr_int("axis", axis)],
            ));
        }
        if !old {
            return Err(format!(
                "QLinearSoftmax of opset {op_opset} in a model of default opset {opset}"
            ));
        }
        let shape = self.push("shape", "Shape", &[xf], None, vec![]);
        let flat = self.push(
            "flatten",
            "Flatten",
            &[xf],
            None,
            vec![attr_int("axis", axis)],
        );
        let soft = self.push(
            "softmax",
            "Softmax",
            &[&flat],
            None,
            vec![attr_int("axis", -1)],
        );
        Ok(self.push("reshape", "Reshape", &[&soft, &shape], None, vec![]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, domain: &str, ins: &[&str]) -> NodeProto {
        let mut n = NodeProto::new();
        n.name = "n".into();
        n.op_type = op.into();
        n.domain = domain.into();
        n.input = ins.iter().map(|s| s.to_string()).collect();
        n.output = vec!["y".into()];
        n
    }

    fn i8_4d(_: &str) -> Option<(DType, usize)> {
        Some((DType::I8, 4))
    }

    fn steps(nodes: &[NodeProto]) -> Vec<(String, String, Vec<String>, Vec<String>)> {
        nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    n.op_type.clone(),
                    n.input.to_vec(),
                    n.output.to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn only_qoperator_ops_of_their_domain_expand() {
        assert!(expand(&node("Conv", "", &["x", "w"]), "n", 17, &i8_4d).is_none());
        // A contrib op in the default domain is not the contrib op.
        assert!(expand(&node("QLinearAdd", "", &["a"]), "n", 17, &i8_4d).is_none());
        let ins = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"];
        assert!(matches!(
            expand(&node("QLinearConv", "ai.onnx", &ins), "n", 17, &i8_4d),
            Some(Ok(_))
        ));
    }

    #[test]
    fn qlinearmatmul_steps_are_named_after_the_node() {
        let ins = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"];
        let out = expand(&node("QLinearMatMul", "", &ins), "mm", 17, &i8_4d)
            .unwrap()
            .unwrap();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            steps(&out),
            [
                (
                    "mm/dequantize_a".into(),
                    "DequantizeLinear".into(),
                    s(&["a", "as", "az"]),
                    s(&["mm/dequantize_a"])
                ),
                (
                    "mm/dequantize_b".into(),
                    "DequantizeLinear".into(),
                    s(&["b", "bs", "bz"]),
                    s(&["mm/dequantize_b"])
                ),
                (
                    "mm/matmul".into(),
                    "MatMul".into(),
                    s(&["mm/dequantize_a", "mm/dequantize_b"]),
                    s(&["mm/matmul"])
                ),
                (
                    "mm/quantize".into(),
                    "QuantizeLinear".into(),
                    s(&["mm/matmul", "ys", "yz"]),
                    s(&["y"])
                ),
            ]
        );
    }

    /// Without an output zero point, a contrib op's output has its input's dtype (the
    /// schema's T), which QuantizeLinear then gets as `output_dtype`.
    #[test]
    fn absent_output_zero_point_keeps_the_input_dtype() {
        let out = expand(
            &node("QLinearSigmoid", "com.microsoft", &["x", "xs", "", "ys"]),
            "s",
            17,
            &i8_4d,
        )
        .unwrap()
        .unwrap();
        let q = out.last().unwrap();
        assert_eq!(q.input, ["s/sigmoid", "ys"]);
        let a = Attrs::new(q);
        assert_eq!(
            a.int("output_dtype").unwrap(),
            Some(i64::from(DType::I8.onnx()))
        );
        // The absent input zero point is absent from the DequantizeLinear too.
        assert_eq!(out[0].input, ["x", "xs"]);
    }

    #[test]
    fn malformed_nodes_are_refused_with_the_reason() {
        let ms = "com.microsoft";
        let concat = expand(
            &node("QLinearConcat", ms, &["ys", "yz", "x", "xs"]),
            "c",
            17,
            &i8_4d,
        );
        assert!(matches!(concat, Some(Err(e)) if e.contains("triples")));
        let conv = expand(
            &node("QLinearConv", "", &["x", "xs", "xz"]),
            "c",
            17,
            &i8_4d,
        );
        assert!(matches!(conv, Some(Err(e)) if e.contains("w")));
        let mut pool = node(
            "QLinearGlobalAveragePool",
            ms,
            &["x", "xs", "xz", "ys", "yz"],
        );
        pool.attribute.push(attr_int("channels_last", 1));
        let unknown = |_: &str| None;
        assert!(matches!(expand(&pool, "p", 17, &unknown), Some(Err(e)) if e.contains("rank")));
        // Softmax of a newer opset than the model's cannot be spelled with its ops.
        let mut soft = node("QLinearSoftmax", ms, &["x", "xs", "xz", "ys", "yz"]);
        soft.attribute.push(attr_int("opset", 13));
        assert!(matches!(expand(&soft, "s", 11, &i8_4d), Some(Err(_))));
    }
}

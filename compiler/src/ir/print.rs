//! The deterministic text form of a graph: the format of snapshot tests, `--emit ir` and
//! `--print-after`.
//!
//! ```text
//! graph mlp {
//!   input x: f32[1,64]
//!   const fc1.weight: f32[128,64]
//!   h: f32[1,128] = Gemm{alpha=1.0 beta=1.0 trans_b}(x, fc1.weight, fc1.bias)  # fc1
//!   output h
//! }
//! ```

use std::fmt::Write;

use super::Graph;

fn shape(s: &[usize]) -> String {
    let d: Vec<String> = s.iter().map(|x| x.to_string()).collect();
    format!("[{}]", d.join(","))
}

/// Prints the graph: inputs, the constants nodes use, nodes in topological order, outputs.
pub fn print(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "graph {} {{", g.name);
    for &i in &g.inputs {
        let v = g.value(i);
        let _ = writeln!(s, "  input {}: {}{}", v.name, v.dtype, shape(&v.shape));
    }
    let order = g.topo_order();
    let mut consts = Vec::new();
    for &n in &order {
        for &i in &g.node(n).inputs {
            if g.konst(i).is_some() && !consts.contains(&i) {
                consts.push(i);
            }
        }
    }
    for &o in &g.outputs {
        if g.konst(o).is_some() && !consts.contains(&o) {
            consts.push(o);
        }
    }
    for c in consts {
        let v = g.value(c);
        let _ = write!(s, "  const {}: {}{}", v.name, v.dtype, shape(&v.shape));
        if let Some(t) = &v.konst
            && t.len() <= 8
        {
            // Integers exactly (an i64 past 2^53 does not survive f64), the rest as f64.
            let vals: Option<Vec<String>> = match t.to_i64s() {
                Some(ints) => Some(ints.iter().map(|x| x.to_string()).collect()),
                None => t
                    .to_f64s()
                    .map(|f| f.iter().map(|x| format!("{x}")).collect()),
            };
            if let Some(vals) = vals {
                let _ = write!(s, " = [{}]", vals.join(","));
            }
        }
        s.push('\n');
    }
    for n in order {
        let node = g.node(n);
        let outs: Vec<String> = node
            .outputs
            .iter()
            .map(|&o| {
                let v = g.value(o);
                format!("{}: {}{}", v.name, v.dtype, shape(&v.shape))
            })
            .collect();
        let ins: Vec<&str> = node
            .inputs
            .iter()
            .map(|&i| g.value(i).name.as_str())
            .collect();
        let _ = writeln!(
            s,
            "  {} = {}({})  # {}",
            outs.join(", "),
            node.op,
            ins.join(", "),
            node.name
        );
    }
    let outs: Vec<String> = (0..g.outputs.len())
        .map(|i| {
            let (model, value) = (g.output_name(i), &g.value(g.outputs[i]).name);
            if model == value {
                model.to_string()
            } else {
                format!("{model}={value}")
            }
        })
        .collect();
    let _ = writeln!(s, "  output {}", outs.join(", "));
    s.push_str("}\n");
    s
}

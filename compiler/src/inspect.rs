//! `edgecc inspect`: what a model contains and whether edgecc can compile it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::Error;
use crate::onnx::{self, Dim, QOPERATOR_OPS, SUPPORTED_OPS, declared_type};
use crate::pipeline::{self, Options};

fn dims(d: &[Dim]) -> String {
    let v: Vec<String> = d
        .iter()
        .map(|d| match d {
            Dim::Fixed(x) => x.to_string(),
            Dim::Symbolic(s) => s.clone(),
        })
        .collect();
    format!("[{}]", v.join(","))
}

/// The inspection report. Only an unreadable file is an error; unsupported ops and
/// unresolved shapes are part of the report.
pub fn inspect(path: &Path, opts: &Options) -> Result<String, Error> {
    let model = onnx::read(path)?;
    let g = model.graph.as_ref().expect("decode checks the graph");
    let mut s = String::new();
    let _ = writeln!(s, "model:     {}", path.display());
    let _ = writeln!(
        s,
        "producer:  {} {} (IR version {})",
        model.producer_name, model.producer_version, model.ir_version
    );
    let opsets: Vec<String> = model
        .opset_import
        .iter()
        .map(|o| {
            format!(
                "{}={}",
                if o.domain.is_empty() {
                    "ai.onnx"
                } else {
                    &o.domain
                },
                o.version
            )
        })
        .collect();
    let _ = writeln!(s, "opsets:    {}", opsets.join(", "));
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let _ = writeln!(s, "inputs:");
    for vi in g
        .input
        .iter()
        .filter(|vi| !inits.contains(vi.name.as_str()))
    {
        let frozen = if opts.frozen_inputs.contains_key(&vi.name) {
            " (frozen by --freeze: a constant in the compiled model)"
        } else {
            ""
        };
        match declared_type(vi) {
            Ok((dt, d)) => {
                let _ = writeln!(s, "  {}: {}{}{frozen}", vi.name, dt, dims(&d));
            }
            Err(e) => {
                let _ = writeln!(s, "  {}: {e}", vi.name);
            }
        }
    }
    let _ = writeln!(s, "outputs:");
    for vi in &g.output {
        match declared_type(vi) {
            Ok((dt, d)) => {
                let _ = writeln!(s, "  {}: {}{}", vi.name, dt, dims(&d));
            }
            Err(_) => {
                let _ = writeln!(s, "  {}", vi.name);
            }
        }
    }
    let mut params = 0u64;
    let mut param_bytes = 0u64;
    for t in &g.initializer {
        let n: u64 = t.dims.iter().map(|&d| d.max(0) as u64).product();
        params += n;
        let bits = crate::ir::DType::from_onnx(t.data_type).map_or(0, |d| d.bits()) as u64;
        param_bytes += (n * bits).div_ceil(8);
    }
    let _ = writeln!(
        s,
        "params:    {params} in {} initializers ({param_bytes} bytes)",
        g.initializer.len()
    );
    let mut hist: BTreeMap<String, usize> = BTreeMap::new();
    for n in &g.node {
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}::{}", n.domain, n.op_type)
        };
        *hist.entry(key).or_default() += 1;
    }
    let _ = writeln!(s, "ops:       {} nodes", g.node.len());
    for (op, count) in &hist {
        // QOperator ops are imported by expansion (onnx/qoperator.rs).
        let expanded = QOPERATOR_OPS.iter().any(|(d, o)| {
            if d.is_empty() {
                op == o
            } else {
                *op == format!("{d}::{o}")
            }
        });
        let mark = if SUPPORTED_OPS.contains(&op.as_str()) || expanded {
            ""
        } else {
            "  (unsupported)"
        };
        let _ = writeln!(s, "  {count:>5}  {op}{mark}");
    }
    match pipeline::compile(path, opts) {
        Ok(c) => {
            let l = &c.lowered;
            let pct = if l.arena_lower_bound > 0 {
                format!(
                    "{:.1}% of the lower bound {}",
                    100.0 * l.program.arena_size as f64 / l.arena_lower_bound as f64,
                    l.arena_lower_bound
                )
            } else {
                "no intermediates".into()
            };
            let _ = writeln!(s, "compiles:  yes, {} kernels", l.program.kernels.len());
            let _ = writeln!(
                s,
                "arena:     {} bytes ({pct}; {})",
                l.program.arena_size, l.arena_heuristic
            );
        }
        Err(e) => {
            let _ = writeln!(s, "compiles:  no");
            for line in e.to_string().lines() {
                let _ = writeln!(s, "  {line}");
            }
        }
    }
    Ok(s)
}

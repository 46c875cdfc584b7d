//! Every ONNX tensor dtype, from raw_data and from the typed fields, decodes to the values
//! onnx's own `numpy_helper.to_array` gives (recorded in tests/data/dtypes.json by
//! scripts/make_models.py).

mod common;

use edgecc::ir::Data;
use edgecc::onnx::{DataDir, tensor};
use serde_json::Value;

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        Value::Bool(b) => *b as u8 as f64,
        v => v.as_f64().unwrap(),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a == b && a.is_sign_negative() == b.is_sign_negative())
}

#[test]
fn every_dtype_decodes_like_onnx() {
    let root = common::root().join("tests/data");
    let model = edgecc::onnx::read(&root.join("dtypes.onnx")).unwrap();
    let want: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("dtypes.json")).unwrap()).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let mut checked = std::collections::BTreeSet::new();
    for init in &graph.initializer {
        let w = &want[&init.name];
        let t = tensor::decode(init, DataDir { base: None })
            .unwrap_or_else(|e| panic!("{}: {e}", init.name));
        assert_eq!(
            t.dtype.onnx() as i64,
            w["dtype"].as_i64().unwrap(),
            "{}",
            init.name
        );
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{}", init.name);
        let values = w["values"].as_array().unwrap();
        assert_eq!(t.len(), values.len(), "{}", init.name);
        match &t.data {
            Data::Str(s) => {
                for (got, v) in s.iter().zip(values) {
                    assert_eq!(
                        got.as_slice(),
                        v.as_str().unwrap().as_bytes(),
                        "{}",
                        init.name
                    );
                }
            }
            Data::I64(x) => {
                for (got, v) in x.iter().zip(values) {
                    assert_eq!(*got, v.as_i64().unwrap(), "{}", init.name);
                }
            }
            Data::U64(x) => {
                for (got, v) in x.iter().zip(values) {
                    assert_eq!(*got, v.as_u64().unwrap(), "{}", init.name);
                }
            }
            Data::C64(x) => {
                for (got, v) in x.iter().zip(values) {
                    assert!(
                        same(got[0] as f64, num(&v[0])) && same(got[1] as f64, num(&v[1])),
                        "{}",
                        init.name
                    );
                }
            }
            Data::C128(x) => {
                for (got, v) in x.iter().zip(values) {
                    assert!(
                        same(got[0], num(&v[0])) && same(got[1], num(&v[1])),
                        "{}",
                        init.name
                    );
                }
            }
            _ => {
                let got = t.to_f64s().unwrap();
                for (i, (g, v)) in got.iter().zip(values).enumerate() {
                    assert!(
                        same(*g, num(v)),
                        "{} element {i}: got {g}, onnx says {v}",
                        init.name
                    );
                }
            }
        }
        checked.insert(t.dtype);
    }
    // Every dtype this onnx version defines is covered, from both encodings.
    assert_eq!(
        checked.len(),
        edgecc::ir::DType::ALL.len(),
        "dtypes covered: {checked:?}"
    );
}

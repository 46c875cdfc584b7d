//! ONNX `TensorProto` bytes (the test-data `.pb` files, and every initializer of a model)
//! through the tensor decoder: every dtype, `raw_data` and the typed fields. A panic, or
//! memory out of proportion to the input (dims that lie), is a finding.
#![no_main]

use edgecc::io::{TensorFormat, decode_tensor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = decode_tensor(data, TensorFormat::Pb) {
        // Every shape keeps to the graph's limit (so no product over its dims overflows).
        let n = edgecc::ir::checked_elements(&t.shape).expect("a shape within 2^40 elements");
        assert_eq!(t.data.len(), n, "elements vs shape {:?}", t.shape);
        // Sub-byte dtypes pack up to 4 (2-bit) elements a byte.
        assert!(
            n <= data.len() * 8,
            "{n} elements from {} bytes",
            data.len()
        );
    }
});

//! `.npy` bytes through the reader `edgecc run --input x=in.npy` uses. A panic, or memory
//! out of proportion to the file (a header that lies about the shape), is a finding.
#![no_main]

use edgecc::io::{TensorFormat, decode_tensor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = decode_tensor(data, TensorFormat::Npy) {
        // Every shape keeps to the graph's limit (so no product over its dims overflows).
        let n = edgecc::ir::checked_elements(&t.shape).expect("a shape within 2^40 elements");
        assert_eq!(t.data.len(), n, "elements vs shape {:?}", t.shape);
        assert!(
            n <= data.len() * 8,
            "{n} elements from {} bytes",
            data.len()
        );
    }
});

//! `.npy` bytes through the reader `edgecc run --input x=in.npy` uses. A panic, or memory
//! out of proportion to the file (a header that lies about the shape), is a finding.
#![no_main]

use edgecc::io::{TensorFormat, decode_tensor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = decode_tensor(data, TensorFormat::Npy) {
        let n: usize = t.shape.iter().product();
        assert_eq!(t.data.len(), n, "elements vs shape {:?}", t.shape);
        assert!(n <= data.len() * 8, "{n} elements from {} bytes", data.len());
    }
});

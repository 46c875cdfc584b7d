//! 256-entry byte tables (every int8 elementwise op) on HVX with `vlut32`.

use std::fmt::Write;

use edgecc_program::Buffer;

use super::array;
use crate::c::ptr;

/// A 256-entry byte table (every int8 elementwise op after `fold-requant`) with `vlut32`:
/// each instruction looks up the 32 entries of one segment (`index >> 5`), giving 0 for
/// indices in other segments, so eight of them OR-ed cover the table, 128 bytes at a time.
/// Every byte is a valid index (u8, or i8 wrapped by 256), so nothing is checked. Two
/// vectors hold the table in the order `vlut32` reads: entry `i` of each 128-entry half
/// at byte `2·(i mod 64) + i / 64`.
pub(super) fn byte_table(
    s: &mut String,
    table: &[u8],
    count: u64,
    indices: Buffer,
    output: Buffer,
) {
    let mut lut = vec![0u8; 256];
    for (i, &v) in table.iter().enumerate() {
        let (half, j) = (i / 128, i % 128);
        lut[half * 128 + 2 * (j % 64) + j / 64] = v;
    }
    array(s, "uint8_t", "lut", &lut);
    let full = count - count % 128;
    let _ = writeln!(
        s,
        "    const u8a *X = {};
    u8a *Y = {};
    const HVX_Vector lo = *(const HVX_Vector *)lut, hi = *(const HVX_Vector *)(lut + 128);
    for (ix_t i = 0; i < {full}; i += 128) {{
        const HVX_Vector x = *(const HVX_UVector *)(X + i);
        HVX_Vector y = Q6_Vb_vlut32_VbVbR(x, lo, 0);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, lo, 1);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, lo, 2);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, lo, 3);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, hi, 4);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, hi, 5);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, hi, 6);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, hi, 7);
        *(HVX_UVector *)(Y + i) = y;
    }}
    for (ix_t i = {full}; i < {count}; i++) {{
        const uint8_t x = X[i];
        Y[i] = lut[(x & 128) + 2 * (x & 63) + ((x >> 6) & 1)];
    }}",
        ptr(indices, "u8a"),
        ptr(output, "u8a"),
    );
}

//! 8-bit max pooling on HVX.

use std::fmt::Write;

use edgecc_program::{Buffer, Spatial, Window};

use super::array;
use crate::c::ptr;

/// The stack a max pool's padded plane may take (and again its stride-1 maxima).
const MAX_POOL_BAND: u64 = 8 * 1024;

/// 8-bit max pooling on the padded wide grid, as the stride-1 convolution: each plane is
/// copied with its padding written out (the dtype's minimum), the stride-1 maximum of
/// every window is taken 128 positions at a time (one unaligned load and `vmax` per
/// tap), and the strided outputs are picked from it. i8 is flipped to u8 (`x ^ 0x80`
/// keeps the order) so `vmaxub` serves both. Returns false (plain C) for planes larger
/// than the stack band.
pub(super) fn max_pool(
    s: &mut String,
    limit: u64,
    signed: bool,
    channels: u32,
    sp: &Spatial,
    w: &Window,
    (input, output): (Buffer, Buffer),
) -> bool {
    let ext_h = (w.kh.max(1) - 1) * w.dilation_h;
    let ext_w = (w.kw.max(1) - 1) * w.dilation_w;
    if sp.out_h == 0 || sp.out_w == 0 || channels == 0 || w.kh == 0 || w.kw == 0 {
        return false;
    }
    // Rows and columns of the padded plane, widened if a window reaches past the end
    // padding (ceil mode); those taps read the minimum, i.e. are ignored.
    let hp = (sp.in_h + w.pad_top + w.pad_bottom).max((sp.out_h - 1) * w.stride_h + ext_h + 1);
    let wp = (sp.in_w + w.pad_left + w.pad_right).max((sp.out_w - 1) * w.stride_w + ext_w + 1);
    let used = hp as u64 * wp as u64;
    let need =
        ((sp.out_h - 1) * w.stride_h) as u64 * wp as u64 + ((sp.out_w - 1) * w.stride_w) as u64 + 1;
    let need = need.next_multiple_of(128);
    if used + 128 > MAX_POOL_BAND || need > MAX_POOL_BAND {
        return false;
    }
    let band = used + 128;
    let taps: Vec<u32> = (0..w.kh)
        .flat_map(|ky| (0..w.kw).map(move |kx| ky * w.dilation_h * wp + kx * w.dilation_w))
        .collect();
    array(s, "int32_t", "toff", &taps);
    let flip = if signed { "0x80" } else { "0" };
    let t = if signed { "i8a" } else { "u8a" };
    let Spatial {
        in_h,
        in_w,
        out_h,
        out_w,
        ..
    } = *sp;
    let _ = writeln!(
        s,
        "    const u8a *X = {};
    {t} *Y = {};
    uint8_t band[{band}] __attribute__((aligned(128)));
    uint8_t mb[{need}] __attribute__((aligned(128)));
    for (ix_t i = {used}; i < {band}; i++) band[i] = 0;
    for (ix_t c = 0; c < {channels}; c++) {{
        const u8a *xc = X + c * {};
        for (ix_t y = 0; y < {hp}; y++) {{
            uint8_t *d = band + y * {wp};
            const ix_t iy = y - {};
            if (iy < 0 || iy >= {in_h}) {{
                for (ix_t x = 0; x < {wp}; x++) d[x] = 0;
                continue;
            }}
            const u8a *xr = xc + iy * {in_w};
            for (ix_t x = 0; x < {}; x++) d[x] = 0;
            ec_copy_row(d + {}, xr, {in_w}, {flip}, X + {limit});
            for (ix_t x = {}; x < {wp}; x++) d[x] = 0;
        }}
        for (ix_t p0 = 0; p0 < {need}; p0 += 128) {{
            HVX_Vector m = *(const HVX_UVector *)(band + p0);
            for (ix_t t = 1; t < {}; t++) m = Q6_Vub_vmax_VubVub(m, *(const HVX_UVector *)(band + p0 + toff[t]));
            *(HVX_Vector *)(mb + p0) = m;
        }}
        {t} *yc = Y + c * {};
        for (ix_t oy = 0; oy < {out_h}; oy++)
        for (ix_t ox = 0; ox < {out_w}; ox++)
            yc[oy * {out_w} + ox] = ({t})(mb[oy * {} + ox * {}] ^ {flip});
    }}",
        ptr(input, "u8a"),
        ptr(output, t),
        in_h * in_w,
        w.pad_top,
        w.pad_left,
        w.pad_left,
        w.pad_left + in_w,
        taps.len(),
        out_h * out_w,
        w.stride_h * wp,
        w.stride_w,
    );
    true
}

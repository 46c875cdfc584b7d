//! int8 convolution on HVX (any groups, so depthwise too): 32 output pixels per vector,
//! `vrmpy(Vu.ub, Rt.b)` with the weights as scalar words. Stride 1 runs on the padded wide
//! grid (every tap a contiguous run of the band), other strides on a 32-pixel im2col block.

use std::fmt::Write;

use edgecc_program::{Buffer, DType, QuantOut, Spatial, Window, ZeroPoint};

use super::{array, requant, store, zero_expr};
use crate::Error;
use crate::c::{ctype, ptr};

/// The largest reduction (`c_in / groups · kh · kw`) the convolution handles: its im2col
/// block is `K · 32` bytes of stack (16 KiB here). Larger ones use the plain-C kernel.
pub(super) const MAX_CONV_K: u64 = 512;

/// The stack a stride-1 convolution's padded input band may take.
const MAX_BAND: u32 = 16 * 1024;

pub(super) struct Conv<'a> {
    /// Bytes that may be read from the input's start (its buffer's end), for vector loads.
    pub(super) in_limit: u64,
    pub(super) c_in: u32,
    pub(super) c_out: u32,
    pub(super) groups: u32,
    pub(super) sp: Spatial,
    pub(super) w: Window,
    pub(super) input: Buffer,
    pub(super) signed: bool,
    pub(super) in_dtype: DType,
    pub(super) zero: ZeroPoint,
    pub(super) weight: &'a [u8],
    pub(super) bias: Option<Vec<i32>>,
    pub(super) out: &'a QuantOut,
    pub(super) output: Buffer,
}

impl Conv<'_> {
    pub(super) fn emit(&self, s: &mut String) -> Result<(), Error> {
        let (g, c_out) = (self.groups as usize, self.c_out as usize);
        let cpg = (self.c_in / self.groups) as usize;
        let opg = c_out / g;
        let Window {
            kh,
            kw,
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            pad_top,
            pad_left,
            ..
        } = self.w;
        let Spatial {
            n,
            in_h,
            in_w,
            out_h,
            out_w,
        } = self.sp;
        let k = cpg * (kh * kw) as usize;
        let k4 = k.div_ceil(4);
        // Weight words: w[co, 4q..4q+4] little-endian, zero past k.
        let mut words = vec![0i32; c_out * k4];
        let mut wsum = vec![0i32; c_out];
        for co in 0..c_out {
            for kk in 0..k {
                let v = self.weight[co * k + kk] as i8;
                let word = &mut words[co * k4 + kk / 4];
                *word |= ((v as u8 as u32) << (8 * (kk % 4))) as i32;
                wsum[co] = wsum[co].wrapping_add(v as i32);
            }
        }
        array(s, "int32_t", "wq", &words);
        let bias: Vec<i32> = (0..c_out)
            .map(|c| {
                self.bias
                    .as_ref()
                    .and_then(|b| b.get(c).copied())
                    .unwrap_or(0)
            })
            .collect();
        match self.zero {
            ZeroPoint::Const(z) => {
                let z = z + if self.signed { 128 } else { 0 };
                let folded: Vec<i32> = bias
                    .iter()
                    .zip(&wsum)
                    .map(|(b, ws)| b.wrapping_sub(z.wrapping_mul(*ws)))
                    .collect();
                array(s, "int32_t", "bz", &folded);
                let _ = writeln!(s, "    const uint8_t pad = {};", z as u8);
            }
            ZeroPoint::Runtime(_) => {
                array(s, "int32_t", "bb", &bias);
                array(s, "int32_t", "ws", &wsum);
                let _ = writeln!(
                    s,
                    "    const int32_t zp = {};\n    const uint8_t pad = (uint8_t)zp;",
                    zero_expr(self.zero, self.in_dtype, self.signed)
                );
            }
        }
        if let QuantOut::Requant(r) = self.out
            && r.multiplier.len() != 1
        {
            if r.multiplier.len() < c_out {
                return Err(Error(
                    "malformed program: fewer multipliers than channels".into(),
                ));
            }
            array(s, "int32_t", "mult", &r.multiplier[..c_out]);
        }
        if let Some(plan) = self.wide_plan() {
            self.emit_wide(s, plan, k, k4);
            return Ok(());
        }
        let planes = (out_h * out_w) as usize;
        let blocks = planes.div_ceil(32);
        let last = planes - (blocks - 1) * 32;
        let flip = if self.signed { " ^ 0x80" } else { "" };
        let _ = writeln!(
            s,
            "    const u8a *X = {};\n    {} *Y = {};\n    uint8_t col[{}] __attribute__((aligned(128)));\n    int32_t acc_out[4][32] __attribute__((aligned(128)));",
            ptr(self.input, "u8a"),
            ctype(self.out.dtype()),
            ptr(self.output, ctype(self.out.dtype())),
            k4 * 128
        );
        // Bytes of the last im2col word past k multiply zero weights; keep them defined.
        if !k.is_multiple_of(4) {
            let _ = writeln!(
                s,
                "    for (ix_t p = 0; p < 32; p++) *(uint32_t *)&col[{} + p * 4] = 0;",
                (k4 - 1) * 128
            );
        }
        let _ = writeln!(
            s,
            "    for (ix_t nn = 0; nn < {n}; nn++)\n    for (ix_t gr = 0; gr < {g}; gr++) {{\n        const u8a *xg = X + (nn * {} + gr * {cpg}) * {};\n        ix_t oy0 = 0, ox0 = 0;\n        for (ix_t pb = 0; pb < {blocks}; pb++) {{\n            const ix_t np = pb == {} ? {last} : 32;",
            self.c_in,
            in_h * in_w,
            blocks - 1
        );
        // im2col of the block: pixel p's tap kk at col[(kk / 4) * 128 + p * 4 + kk % 4].
        let _ = writeln!(
            s,
            "            ix_t oy = oy0, ox = ox0;\n            for (ix_t p = 0; p < np; p++) {{\n                ix_t kk = 0;\n                for (ix_t ci = 0; ci < {cpg}; ci++)\n                for (ix_t ky = 0; ky < {kh}; ky++) {{\n                    const ix_t iy = oy * {stride_h} - {pad_top} + ky * {dilation_h};\n                    const int rowok = iy >= 0 && iy < {in_h};\n                    const u8a *xr = xg + (ci * {in_h} + iy) * {in_w};\n                    for (ix_t kx = 0; kx < {kw}; kx++, kk++) {{\n                        const ix_t ix = ox * {stride_w} - {pad_left} + kx * {dilation_w};\n                        col[(kk >> 2) * 128 + p * 4 + (kk & 3)] = rowok && ix >= 0 && ix < {in_w} ? (uint8_t)(xr[ix]{flip}) : pad;\n                    }}\n                }}\n                if (++ox == {out_w}) {{ ox = 0; oy++; }}\n            }}\n            oy0 = oy; ox0 = ox;"
        );
        // Four output channels at a time share each im2col vector.
        let full = opg - opg % 4;
        let init = |c: &str| match self.zero {
            ZeroPoint::Const(_) => format!("Q6_V_vsplat_R(bz[{c}])"),
            ZeroPoint::Runtime(_) => format!(
                "Q6_V_vsplat_R((int32_t)((uint32_t)bb[{c}] - (uint32_t)zp * (uint32_t)ws[{c}]))"
            ),
        };
        let block = |s: &mut String, r: usize, co0: &str| {
            for j in 0..r {
                let _ = writeln!(
                    s,
                    "                HVX_Vector acc{j} = {};\n                const int32_t *w{j} = &wq[({co0} + {j}) * {k4}];",
                    init(&format!("{co0} + {j}"))
                );
            }
            let _ = writeln!(
                s,
                "                for (ix_t q = 0; q < {k4}; q++) {{\n                    const HVX_Vector v = ((const HVX_Vector *)col)[q];"
            );
            for j in 0..r {
                let _ = writeln!(
                    s,
                    "                    acc{j} = Q6_Vw_vrmpyacc_VwVubRb(acc{j}, v, w{j}[q]);"
                );
            }
            s.push_str("                }\n");
            for j in 0..r {
                let m = match self.out {
                    QuantOut::Requant(q) if q.multiplier.len() == 1 => {
                        format!("Q6_V_vsplat_R({})", q.multiplier[0])
                    }
                    _ => format!("Q6_V_vsplat_R(mult[{co0} + {j}])"),
                };
                requant(s, self.out, j, &m, "                ");
                let _ = writeln!(s, "                *(HVX_Vector *)acc_out[{j}] = acc{j};");
            }
            let _ = writeln!(
                s,
                "                for (ix_t j = 0; j < {r}; j++) {{\n                    const ix_t co = {co0} + j;\n                    {}    *yo = Y + (nn * {c_out} + co) * {planes} + pb * 32;\n                    for (ix_t p = 0; p < np; p++) {{\n                        const int32_t acc = acc_out[j][p];\n                        {}\n                    }}\n                }}",
                ctype(self.out.dtype()),
                store(self.out, "yo", "p")
            );
        };
        if full > 0 {
            let _ = writeln!(
                s,
                "            for (ix_t cb = 0; cb < {full}; cb += 4) {{\n                const ix_t cbase = gr * {opg} + cb;"
            );
            block(s, 4, "cbase");
            s.push_str("            }\n");
        }
        if opg % 4 != 0 {
            let _ = writeln!(
                s,
                "            {{\n                const ix_t cbase = gr * {opg} + {full};"
            );
            block(s, opg % 4, "cbase");
            s.push_str("            }\n");
        }
        s.push_str("        }\n    }\n");
        Ok(())
    }

    /// Whether the convolution runs on the padded wide grid, and with how many output
    /// rows per band: `(rows, padded width, band rows)`.
    ///
    /// With stride 1, output pixel `(oy, ox)` reads padded input `(oy + ky·dh, ox + kx·dw)`.
    /// Over a copy of the input with its padding written out (`Wp` wide), the output
    /// grid taken `Wp` wide (`ox ≥ out_w` computed and dropped) makes every tap a
    /// contiguous run: `band[tap offset + p]` for wide pixel `p`. So each tap of 128
    /// pixels is one unaligned vector load, with no im2col and no bounds checks.
    fn wide_plan(&self) -> Option<(u32, u32, u32)> {
        let w = &self.w;
        let sp = &self.sp;
        if w.stride_h != 1 || w.stride_w != 1 {
            return None;
        }
        let wp = sp.in_w + w.pad_left + w.pad_right;
        let ext = (w.kh - 1) * w.dilation_h;
        if sp.out_w + (w.kw - 1) * w.dilation_w != wp
            || sp.out_h + ext != sp.in_h + w.pad_top + w.pad_bottom
        {
            return None;
        }
        let cpg = self.c_in / self.groups;
        (1..=sp.out_h)
            .rev()
            .map(|rows| (rows, wp, rows + ext))
            .find(|&(_, wp, br)| (cpg as u64 * br as u64 * wp as u64 + 128) <= MAX_BAND as u64)
    }

    fn emit_wide(&self, s: &mut String, (rows, wp, br): (u32, u32, u32), k: usize, k4: usize) {
        let g = self.groups;
        let cpg = self.c_in / g;
        let opg = (self.c_out / g) as usize;
        let Window {
            kh,
            kw,
            dilation_h,
            dilation_w,
            pad_top,
            pad_left,
            ..
        } = self.w;
        let Spatial {
            n,
            in_h,
            in_w,
            out_h,
            out_w,
        } = self.sp;
        let ext = (kh - 1) * dilation_h;
        let used = cpg * br * wp;
        let band = used + 128;
        // Band offset of each tap; taps past k read anything (their weights are 0).
        let mut toff = vec![0u32; k4 * 4];
        for (kk, t) in toff.iter_mut().enumerate().take(k) {
            let kk = kk as u32;
            let (ci, r) = (kk / (kh * kw), kk % (kh * kw));
            let (ky, kx) = (r / kw, r % kw);
            *t = ci * br * wp + ky * dilation_h * wp + kx * dilation_w;
        }
        array(s, "int32_t", "toff", &toff);
        let flip8 = if self.signed { "0x80" } else { "0" };
        let limit = self.in_limit;
        let oty = ctype(self.out.dtype());
        let _ = writeln!(
            s,
            "    const u8a *X = {};
    {oty} *Y = {};
    uint8_t band[{band}] __attribute__((aligned(128)));
{}
    /* Read past the last band row by the garbage lanes of the last vector. */
    for (ix_t i = {used}; i < {band}; i++) band[i] = pad;
    for (ix_t nn = 0; nn < {n}; nn++)
    for (ix_t gr = 0; gr < {g}; gr++) {{
        const u8a *xg = X + (nn * {} + gr * {cpg}) * {};
        for (ix_t oy0 = 0; oy0 < {out_h}; oy0 += {rows}) {{
            const ix_t rows = {out_h} - oy0 < {rows} ? {out_h} - oy0 : {rows};
            for (ix_t ci = 0; ci < {cpg}; ci++)
            for (ix_t r = 0; r < rows + {ext}; r++) {{
                const ix_t iy = oy0 + r - {pad_top};
                uint8_t *d = band + (ci * {br} + r) * {wp};
                if (iy < 0 || iy >= {in_h}) {{
                    for (ix_t x = 0; x < {wp}; x++) d[x] = pad;
                    continue;
                }}
                const u8a *xr = xg + (ci * {in_h} + iy) * {in_w};
                for (ix_t x = 0; x < {pad_left}; x++) d[x] = pad;
                ec_copy_row(d + {pad_left}, xr, {in_w}, {flip8}, X + {limit});
                for (ix_t x = {}; x < {wp}; x++) d[x] = pad;
            }}
            const ix_t pw = (rows - 1) * {wp} + {out_w};
            for (ix_t p0 = 0; p0 < pw; p0 += 128) {{
                const ix_t nl = pw - p0 < 128 ? pw - p0 : 128;
                const uint8_t *bp = band + p0;",
            ptr(self.input, "u8a"),
            ptr(self.output, oty),
            if self.out == &QuantOut::I32 {
                "    int32_t acc_out[4][128] __attribute__((aligned(128)));"
            } else {
                "    /* Requantized lanes are narrowed and stored straight from the vectors. */"
            },
            self.c_in,
            in_h * in_w,
            pad_left + in_w,
        );
        let full = opg - opg % 4;
        let planes = out_h * out_w;
        let block = |s: &mut String, r: usize| {
            for j in 0..r {
                let _ = writeln!(
                    s,
                    "                    const HVX_Vector b{j} = {};
                    const int32_t *w{j} = &wq[(cbase + {j}) * {k4}];",
                    self.init(&format!("cbase + {j}"))
                );
                for t in 0..4 {
                    let _ = writeln!(s, "                    HVX_Vector acc{t}_{j} = b{j};");
                }
            }
            let _ = writeln!(
                s,
                "                    for (ix_t q = 0; q < {k4}; q++) {{
                        HVX_Vector v[4];
                        ec_taps4(bp, &toff[q * 4], v);"
            );
            for j in 0..r {
                for t in 0..4 {
                    let _ = writeln!(
                        s,
                        "                        acc{t}_{j} = Q6_Vw_vrmpyacc_VwVubRb(acc{t}_{j}, v[{t}], w{j}[q]);"
                    );
                }
            }
            s.push_str(
                "                    }
",
            );
            for j in 0..r {
                let m = self.multiplier(&format!("cbase + {j}"));
                for t in 0..4 {
                    requant(s, self.out, format!("{t}_{j}"), &m, "                    ");
                    if self.out == &QuantOut::I32 {
                        let _ = writeln!(
                            s,
                            "                    *(HVX_Vector *)&acc_out[{j}][{}] = acc{t}_{j};",
                            32 * t
                        );
                    }
                }
            }
            if matches!(self.out, QuantOut::Requant(_)) {
                // Bytes: one narrowed vector per channel, stored a wide row at a time.
                for j in 0..r {
                    let _ = writeln!(
                        s,
                        "                    {{
                        const HVX_Vector o = ec_narrow4(acc0_{j}, acc1_{j}, acc2_{j}, acc3_{j});
                        uint8_t *yo = (uint8_t *)(Y + (nn * {} + cbase + {j}) * {planes} + oy0 * {out_w});
                        ix_t oy = p0 / {wp}, ox = p0 - oy * {wp};
                        for (ix_t l = 0; l < nl; oy++, ox = 0) {{
                            const ix_t run = {wp} - ox < nl - l ? {wp} - ox : nl - l;
                            if (ox < {out_w}) ec_store_lanes(yo + oy * {out_w} + ox, o, l, run < {out_w} - ox ? run : {out_w} - ox);
                            l += run;
                        }}
                    }}",
                        self.c_out
                    );
                }
                return;
            }
            let _ = writeln!(
                s,
                "                    for (ix_t j = 0; j < {r}; j++) {{
                        {oty} *yo = Y + (nn * {} + cbase + j) * {planes} + oy0 * {out_w};
                        ix_t oy = p0 / {wp}, ox = p0 - oy * {wp};
                        for (ix_t l = 0; l < nl; l++) {{
                            if (ox < {out_w}) yo[oy * {out_w} + ox] = ({oty})acc_out[j][l];
                            if (++ox == {wp}) {{ ox = 0; oy++; }}
                        }}
                    }}",
                self.c_out
            );
        };
        if full > 0 {
            let _ = writeln!(
                s,
                "                for (ix_t cb = 0; cb < {full}; cb += 4) {{
                    const ix_t cbase = gr * {opg} + cb;"
            );
            block(s, 4);
            s.push_str(
                "                }
",
            );
        }
        if !opg.is_multiple_of(4) {
            let _ = writeln!(
                s,
                "                {{
                    const ix_t cbase = gr * {opg} + {full};"
            );
            block(s, opg % 4);
            s.push_str(
                "                }
",
            );
        }
        s.push_str(
            "            }
        }
    }
",
        );
    }

    /// The bias (less the zero point's share) of channel `c`, splatted.
    fn init(&self, c: &str) -> String {
        match self.zero {
            ZeroPoint::Const(_) => format!("Q6_V_vsplat_R(bz[{c}])"),
            ZeroPoint::Runtime(_) => format!(
                "Q6_V_vsplat_R((int32_t)((uint32_t)bb[{c}] - (uint32_t)zp * (uint32_t)ws[{c}]))"
            ),
        }
    }

    /// The requantization multiplier of channel `c`, splatted.
    fn multiplier(&self, c: &str) -> String {
        match self.out {
            QuantOut::Requant(q) if q.multiplier.len() == 1 => {
                format!("Q6_V_vsplat_R({})", q.multiplier[0])
            }
            _ => format!("Q6_V_vsplat_R(mult[{c}])"),
        }
    }
}

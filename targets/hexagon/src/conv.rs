//! The f32 convolution, direct (no im2col: the kernel's `scratch` is not used), in
//! register tiles of up to 4 output channels × 4 output pixels of a row. Each output's
//! taps accumulate in the executor's order (input channel, kernel row, kernel column,
//! skipping taps outside the input); rows outside the input are skipped per kernel row,
//! and columns are checked only at the borders: the output columns whose every tap lies
//! inside the input row (found at compile time) run unchecked in 4-pixel tiles.

use std::fmt::Write;

use edgecc_program::{Activation, Buffer, ConstId, Spatial, Window};

use crate::Error;
use crate::c::*;
use crate::math;

/// Output channels and pixels of the full register tile.
const CO: u32 = 4;
const PX: u32 = 4;

/// One convolution kernel's operands.
pub(crate) struct Conv {
    pub c_in: u32,
    pub c_out: u32,
    pub groups: u32,
    pub sp: Spatial,
    pub w: Window,
    pub input: Buffer,
    pub weight: ConstId,
    pub bias: Option<ConstId>,
    pub residual: Option<Buffer>,
    pub act: Activation,
    pub output: Buffer,
}

impl Conv {
    pub(crate) fn emit(&self, s: &mut String) -> Result<(), Error> {
        let g = self.groups;
        if g == 0 || !self.c_in.is_multiple_of(g) || !self.c_out.is_multiple_of(g) {
            return Err(Error(
                "malformed program: groups must divide c_in and c_out".into(),
            ));
        }
        let opg = self.c_out / g;
        let Spatial {
            n, out_h, out_w, ..
        } = self.sp;
        if n == 0 || opg == 0 || out_h == 0 || out_w == 0 {
            return Ok(());
        }
        let (full, tail) = (opg - opg % CO, opg % CO);
        let _ = writeln!(
            s,
            "    for (ix_t nn = 0; nn < {n}; nn++)\n    for (ix_t gr = 0; gr < {g}; gr++) {{"
        );
        if full > 0 {
            let _ = writeln!(
                s,
                "        for (ix_t cb = 0; cb < {full}; cb += {CO}) {{\n            const ix_t co = gr * {opg} + cb;"
            );
            self.rows(s, CO, "            ");
            s.push_str("        }\n");
        }
        if tail > 0 {
            let _ = writeln!(
                s,
                "        {{\n            const ix_t co = gr * {opg} + {full};"
            );
            self.rows(s, tail, "            ");
            s.push_str("        }\n");
        }
        s.push_str("    }\n");
        Ok(())
    }

    /// The output columns whose taps all lie inside the input row: `lo..hi` (empty when
    /// none does).
    fn interior(&self) -> (u32, u32) {
        let w = &self.w;
        let (sw, pl) = (w.stride_w as i64, w.pad_left as i64);
        let span = (w.kw as i64 - 1) * w.dilation_w as i64;
        // ox·sw − pl ≥ 0 and ox·sw − pl + span ≤ in_w − 1.
        let lo = (pl + sw - 1) / sw;
        let top = self.sp.in_w as i64 - 1 + pl - span;
        let hi = if top < 0 { 0 } else { top / sw + 1 };
        let hi = hi.min(self.sp.out_w as i64);
        if lo >= hi {
            (0, 0)
        } else {
            (lo as u32, hi as u32)
        }
    }

    /// Every output row of `nco` channels from `co`: checked border columns, unchecked
    /// 4-pixel tiles, unchecked single pixels, checked border columns.
    fn rows(&self, s: &mut String, nco: u32, ind: &str) {
        let ow = self.sp.out_w;
        let (lo, hi) = self.interior();
        let _ = writeln!(s, "{ind}for (ix_t oy = 0; oy < {}; oy++) {{", self.sp.out_h);
        let i2 = format!("{ind}    ");
        let quads = (hi - lo) / PX * PX;
        let segment = |s: &mut String, from: u32, to: u32, step: u32, checked: bool| {
            if from >= to {
                return;
            }
            let _ = writeln!(s, "{i2}for (ix_t ox = {from}; ox < {to}; ox += {step}) {{");
            self.tile(s, nco, step, checked, &format!("{i2}    "));
            let _ = writeln!(s, "{i2}}}");
        };
        if lo >= hi {
            segment(s, 0, ow, 1, true);
        } else {
            segment(s, 0, lo, 1, true);
            segment(s, lo, lo + quads, PX, false);
            segment(s, lo + quads, hi, 1, false);
            segment(s, hi, ow, 1, true);
        }
        let _ = writeln!(s, "{ind}}}");
    }

    /// One tile: `nco` channels from `co`, `npx` pixels from `ox` (stride apart in the
    /// input), every tap column checked against the row when `checked`.
    fn tile(&self, s: &mut String, nco: u32, npx: u32, checked: bool, ind: &str) {
        let Spatial {
            in_h,
            in_w,
            out_h,
            out_w,
            ..
        } = self.sp;
        let w = &self.w;
        let cpg = self.c_in / self.groups;
        let taps = w.kh * w.kw;
        let acc: Vec<String> = (0..nco)
            .flat_map(|c| (0..npx).map(move |p| format!("s{c}_{p} = 0.0f")))
            .collect();
        let _ = writeln!(s, "{ind}float {};", acc.join(", "));
        let px = ptr(self.input, "f32a");
        let pw = ptr(Buffer::Const(self.weight), "f32a");
        let _ = writeln!(
            s,
            "{ind}for (ix_t ci = 0; ci < {cpg}; ci++) {{
{ind}    const f32a *xc = {px} + (nn * {} + gr * {cpg} + ci) * {};
{ind}    const f32a *wc = {pw} + (co * {cpg} + ci) * {taps};
{ind}    for (ix_t ky = 0; ky < {}; ky++) {{
{ind}        const ix_t iy = oy * {} - {} + ky * {};
{ind}        if (iy < 0 || iy >= {in_h}) continue;
{ind}        const f32a *xr = xc + iy * {in_w};
{ind}        for (ix_t kx = 0; kx < {}; kx++) {{
{ind}            const ix_t ix = ox * {} - {} + kx * {};",
            self.c_in,
            in_h * in_w,
            w.kh,
            w.stride_h,
            w.pad_top,
            w.dilation_h,
            w.kw,
            w.stride_w,
            w.pad_left,
            w.dilation_w,
        );
        let i3 = format!("{ind}            ");
        if checked {
            let _ = writeln!(s, "{i3}if (ix < 0 || ix >= {in_w}) continue;");
        }
        for p in 0..npx {
            let _ = writeln!(s, "{i3}const float x{p} = xr[ix + {}];", p * w.stride_w);
        }
        for c in 0..nco {
            let _ = writeln!(
                s,
                "{i3}const float w{c} = wc[{} + ky * {} + kx];",
                c * cpg * taps,
                w.kw
            );
        }
        for c in 0..nco {
            let _ = write!(s, "{i3}");
            for p in 0..npx {
                let _ = write!(s, "s{c}_{p} += w{c} * x{p}; ");
            }
            s.push('\n');
        }
        let _ = writeln!(s, "{ind}        }}\n{ind}    }}\n{ind}}}");
        let po = ptr(self.output, "f32a");
        for c in 0..nco {
            let bias = match self.bias {
                Some(b) => format!("{}[co + {c}]", ptr(Buffer::Const(b), "f32a")),
                None => "0.0f".into(),
            };
            for p in 0..npx {
                let _ = write!(
                    s,
                    "{ind}{{ const ix_t o = ((nn * {} + co + {c}) * {out_h} + oy) * {out_w} + ox + {p}; float v = s{c}_{p} + {bias};",
                    self.c_out
                );
                if let Some(r) = self.residual {
                    let _ = write!(s, " v = v + {}[o];", ptr(r, "f32a"));
                }
                let _ = writeln!(s, " {po}[o] = {}; }}", math::activation(self.act, "v"));
            }
        }
    }
}

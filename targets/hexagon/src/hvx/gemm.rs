//! int8 GEMM on HVX: 32 output columns per vector, the weights packed at compile time into
//! one vector per (32 columns, 4 k), each row's 4 activation bytes splatted for `vrmpy`;
//! four rows share each weight load.

use std::fmt::Write;

use edgecc_program::{DType, QuantOut, ZeroPoint};

use super::{array, requant, store, zero_expr};
use crate::Error;

pub(super) struct Gemm<'a> {
    pub(super) m: u32,
    pub(super) n: u32,
    pub(super) k: u32,
    pub(super) a_ptr: String,
    pub(super) a_offset: u64,
    pub(super) a_row: i64,
    pub(super) a_aligned: bool,
    pub(super) signed: bool,
    pub(super) zero: ZeroPoint,
    pub(super) a_dtype: DType,
    pub(super) b: &'a [u8],
    pub(super) bias: Option<Vec<i32>>,
    pub(super) out: &'a QuantOut,
    pub(super) c_ptr: String,
    pub(super) c_offset: u64,
    pub(super) c_strides: (i64, i64),
}

impl Gemm<'_> {
    pub(super) fn emit(&self, s: &mut String) -> Result<(), Error> {
        let (m, n, k) = (self.m as usize, self.n as usize, self.k as usize);
        let nb = n.div_ceil(32);
        let k4 = k.div_ceil(4);
        // Packed weights: vector (jb, q), lane j, byte t = b[4q + t, 32 jb + j].
        let mut packed = vec![0i8; nb * k4 * 128];
        let mut colsum = vec![0i32; nb * 32];
        for kk in 0..k {
            for (j, cs) in colsum.iter_mut().enumerate().take(n) {
                let v = self.b[kk * n + j] as i8;
                let (jb, jl) = (j / 32, j % 32);
                packed[(jb * k4 + kk / 4) * 128 + jl * 4 + kk % 4] = v;
                *cs = cs.wrapping_add(v as i32);
            }
        }
        array(s, "int8_t", "wp", &packed);
        let bias: Vec<i32> = (0..nb * 32)
            .map(|j| {
                self.bias
                    .as_ref()
                    .and_then(|b| b.get(j).copied())
                    .unwrap_or(0)
            })
            .collect();
        match self.zero {
            ZeroPoint::Const(z) => {
                let folded: Vec<i32> = bias
                    .iter()
                    .zip(&colsum)
                    .map(|(b, cs)| b.wrapping_sub(z.wrapping_mul(*cs)))
                    .collect();
                array(s, "int32_t", "bz", &folded);
            }
            ZeroPoint::Runtime(_) => {
                array(s, "int32_t", "bb", &bias);
                array(s, "int32_t", "cs", &colsum);
                let _ = writeln!(
                    s,
                    "    const int32_t zp = {};",
                    zero_expr(self.zero, self.a_dtype, false)
                );
            }
        }
        if let QuantOut::Requant(r) = self.out
            && r.multiplier.len() != 1
        {
            if r.multiplier.len() < n {
                return Err(Error(
                    "malformed program: fewer multipliers than channels".into(),
                ));
            }
            let mut mv = r.multiplier[..n].to_vec();
            mv.resize(nb * 32, 0);
            array(s, "int32_t", "mv", &mv);
        }
        let _ = writeln!(s, "    const u8a *A = {} + {};", self.a_ptr, self.a_offset);
        if !(self.c_strides.1 == 1 && matches!(self.out, QuantOut::Requant(_))) {
            s.push_str("    int32_t acc_out[4][32] __attribute__((aligned(128)));\n");
        }
        let full = m - m % 4;
        if full > 0 {
            let _ = writeln!(s, "    for (ix_t i = 0; i < {full}; i += 4) {{");
            self.rows(s, 4, nb, k4);
            s.push_str("    }\n");
        }
        if m % 4 != 0 {
            let _ = writeln!(s, "    for (ix_t i = {full}; i < {m}; i++) {{");
            self.rows(s, 1, nb, k4);
            s.push_str("    }\n");
        }
        Ok(())
    }

    /// The body for `r` rows starting at `i`: every column block, the k loop, the stores.
    fn rows(&self, s: &mut String, r: usize, nb: usize, k4: usize) {
        let (n, k) = (self.n as usize, self.k as usize);
        let kf = k / 4;
        let vrmpy = if self.signed {
            "Q6_Vw_vrmpyacc_VwVbVb"
        } else {
            "Q6_Vw_vrmpyacc_VwVubVb"
        };
        let ld = |row: usize, at: &str, bytes: usize| {
            if self.a_aligned && bytes == 4 {
                format!("*(const uint32_t *)(r{row} + {at})")
            } else {
                format!("ec_ld32(r{row} + {at}, {bytes})")
            }
        };
        let _ = writeln!(s, "        for (ix_t jb = 0; jb < {nb}; jb++) {{");
        match self.zero {
            ZeroPoint::Const(_) => {
                s.push_str(
                    "            const HVX_Vector init = *(const HVX_Vector *)&bz[jb * 32];\n",
                );
            }
            ZeroPoint::Runtime(_) => {
                s.push_str(
                    "            int32_t ib[32] __attribute__((aligned(128)));\n            for (ix_t j = 0; j < 32; j++) ib[j] = (int32_t)((uint32_t)bb[jb * 32 + j] - (uint32_t)zp * (uint32_t)cs[jb * 32 + j]);\n            const HVX_Vector init = *(const HVX_Vector *)ib;\n",
                );
            }
        }
        let _ = writeln!(
            s,
            "            const HVX_Vector *w = (const HVX_Vector *)&wp[jb * {}];",
            k4 * 128
        );
        for row in 0..r {
            let _ = writeln!(
                s,
                "            HVX_Vector acc{row} = init;\n            const u8a *r{row} = A + (i + {row}) * {};",
                self.a_row
            );
        }
        if kf > 0 {
            let _ = writeln!(
                s,
                "            for (ix_t q = 0; q < {kf}; q++) {{\n                const HVX_Vector wv = w[q];"
            );
            for row in 0..r {
                let _ = writeln!(
                    s,
                    "                acc{row} = {vrmpy}(acc{row}, Q6_V_vsplat_R((int32_t){}), wv);",
                    ld(row, "4 * q", 4)
                );
            }
            s.push_str("            }\n");
        }
        if k % 4 != 0 {
            for row in 0..r {
                let _ = writeln!(
                    s,
                    "            acc{row} = {vrmpy}(acc{row}, Q6_V_vsplat_R((int32_t){}), w[{kf}]);",
                    ld(row, &format!("{}", 4 * kf), k % 4)
                );
            }
        }
        let mvec = match self.out {
            QuantOut::Requant(q) if q.multiplier.len() == 1 => {
                format!("Q6_V_vsplat_R({})", q.multiplier[0])
            }
            _ => "*(const HVX_Vector *)&mv[jb * 32]".to_string(),
        };
        let last = n - (nb - 1) * 32;
        let (c0, c1) = self.c_strides;
        if c1 == 1 && matches!(self.out, QuantOut::Requant(_)) {
            // Contiguous byte rows: narrow each vector and store its columns at once.
            let _ = writeln!(
                s,
                "            const ix_t nj = jb == {} ? {last} : 32;",
                nb - 1
            );
            for row in 0..r {
                requant(s, self.out, row, &mvec, "            ");
                let _ = writeln!(
                    s,
                    "            ec_store_lanes((uint8_t *)({} + {} + (i + {row}) * {c0} + jb * 32), ec_narrow4(acc{row}, acc{row}, acc{row}, acc{row}), 0, nj);",
                    self.c_ptr, self.c_offset
                );
            }
            s.push_str("        }\n");
            return;
        }
        for row in 0..r {
            requant(s, self.out, row, &mvec, "            ");
            let _ = writeln!(s, "            *(HVX_Vector *)acc_out[{row}] = acc{row};");
        }
        let _ = writeln!(
            s,
            "            const ix_t nj = jb == {} ? {last} : 32;\n            for (ix_t r = 0; r < {r}; r++)\n            for (ix_t j = 0; j < nj; j++) {{\n                const int32_t acc = acc_out[r][j];\n                const ix_t col = jb * 32 + j;\n                {}\n            }}\n        }}",
            nb - 1,
            store(
                self.out,
                &self.c_ptr,
                &format!("{} + (i + r) * {c0} + col * {c1}", self.c_offset),
            )
        );
    }
}

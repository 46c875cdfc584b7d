//! The f32 GEMM in register tiles: `MR × NR` outputs of `C[b]` accumulate in scalar
//! locals over the whole `k` loop (each output's products in the executor's order, each
//! step a multiply-add clang may fuse), so every loaded element of `A` serves `NR`
//! outputs and every element of `B` serves `MR`. Tails of rows and columns get narrower
//! tiles of the same code. Any strides (transposed operands, broadcast batches) are
//! literal index multipliers; the epilogue rounds `alpha · acc`, `+ bias`, `+ residual`
//! one step at a time, then applies the activation.

use std::fmt::Write;

use edgecc_program::{Activation, View};

use crate::Error;
use crate::c::*;
use crate::math;

/// Rows and columns of the full register tile: 16 accumulators, 4 + 4 operands.
const MR: u32 = 4;
const NR: u32 = 4;

/// One GEMM kernel's operands.
pub(crate) struct Gemm<'a> {
    pub batch: u32,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a: &'a View,
    pub b: &'a View,
    pub alpha: f32,
    pub bias: Option<&'a View>,
    pub residual: Option<&'a View>,
    pub act: Activation,
    pub c: &'a View,
}

/// `off + bb·s0 + row·s1 + col·s2` with the constant parts folded; `row` and `col` are C
/// expressions (`i`, `kk`, ...) and `dr`, `dc` constant displacements added to them.
fn index(v: &View, row: &str, dr: i64, col: &str, dc: i64) -> String {
    let (s0, s1, s2) = (v.strides[0], v.strides[1], v.strides[2]);
    let mut s = format!("{}", v.offset as i64 + dr * s1 + dc * s2);
    for (var, st) in [("bb", s0), (row, s1), (col, s2)] {
        if st != 0 {
            let _ = write!(s, " + {var} * {st}");
        }
    }
    s
}

impl Gemm<'_> {
    pub(crate) fn emit(&self, s: &mut String) -> Result<(), Error> {
        for (v, what) in [
            (Some(self.a), "a"),
            (Some(self.b), "b"),
            (Some(self.c), "c"),
        ]
        .into_iter()
        .chain([(self.bias, "bias"), (self.residual, "residual")])
        {
            if let Some(v) = v {
                check_rank(v, 3, what)?;
            }
        }
        if self.batch == 0 || self.m == 0 || self.n == 0 {
            return Ok(());
        }
        let (mf, mt) = (self.m - self.m % MR, self.m % MR);
        let (nf, nt) = (self.n - self.n % NR, self.n % NR);
        let _ = writeln!(s, "    for (ix_t bb = 0; bb < {}; bb++) {{", self.batch);
        let cols = |s: &mut String, mr: u32, ind: &str| {
            if nf > 0 {
                let _ = writeln!(s, "{ind}for (ix_t j = 0; j < {nf}; j += {NR}) {{");
                self.tile(s, mr, NR, &format!("{ind}    "));
                let _ = writeln!(s, "{ind}}}");
            }
            if nt > 0 {
                let _ = writeln!(s, "{ind}{{\n{ind}    const ix_t j = {nf}; (void)j;");
                self.tile(s, mr, nt, &format!("{ind}    "));
                let _ = writeln!(s, "{ind}}}");
            }
        };
        if mf > 0 {
            let _ = writeln!(s, "        for (ix_t i = 0; i < {mf}; i += {MR}) {{");
            cols(s, MR, "            ");
            s.push_str("        }\n");
        }
        if mt > 0 {
            // `(void)`: a view may not depend on the row (or column) at all.
            let _ = writeln!(s, "        {{\n            const ix_t i = {mf}; (void)i;");
            cols(s, mt, "            ");
            s.push_str("        }\n");
        }
        s.push_str("    }\n");
        Ok(())
    }

    /// One `mr × nr` tile at rows `i..`, columns `j..`.
    fn tile(&self, s: &mut String, mr: u32, nr: u32, ind: &str) {
        let acc: Vec<String> = (0..mr)
            .flat_map(|r| (0..nr).map(move |c| format!("s{r}_{c} = 0.0f")))
            .collect();
        let _ = writeln!(s, "{ind}float {};", acc.join(", "));
        if self.k > 0 {
            self.products(s, mr, nr, ind);
        }
        self.epilogue(s, mr, nr, ind);
    }

    /// The `k` loop of a tile: `mr` loads of `A`, `nr` of `B`, `mr · nr` multiply-adds.
    fn products(&self, s: &mut String, mr: u32, nr: u32, ind: &str) {
        let (pa, pb) = (ptr(self.a.buf, "f32a"), ptr(self.b.buf, "f32a"));
        let _ = writeln!(s, "{ind}for (ix_t kk = 0; kk < {}; kk++) {{", self.k);
        for r in 0..mr {
            let _ = writeln!(
                s,
                "{ind}    const float a{r} = {pa}[{}];",
                index(self.a, "i", r as i64, "kk", 0)
            );
        }
        for c in 0..nr {
            let _ = writeln!(
                s,
                "{ind}    const float b{c} = {pb}[{}];",
                index(self.b, "kk", 0, "j", c as i64)
            );
        }
        for r in 0..mr {
            let _ = write!(s, "{ind}   ");
            for c in 0..nr {
                let _ = write!(s, " s{r}_{c} += a{r} * b{c};");
            }
            s.push('\n');
        }
        let _ = writeln!(s, "{ind}}}");
    }

    /// Each output of the tile: `alpha ·`, `+ bias`, `+ residual`, the activation, stored.
    fn epilogue(&self, s: &mut String, mr: u32, nr: u32, ind: &str) {
        let pc = ptr(self.c.buf, "f32a");
        for r in 0..mr {
            for c in 0..nr {
                let (r, c) = (r as i64, c as i64);
                let _ = write!(s, "{ind}{{ float v = s{r}_{c};");
                if self.alpha != 1.0 {
                    let _ = write!(s, " v = v * {};", float_lit(self.alpha));
                }
                for extra in [self.bias, self.residual].into_iter().flatten() {
                    let _ = write!(
                        s,
                        " v = v + {}[{}];",
                        ptr(extra.buf, "f32a"),
                        index(extra, "i", r, "j", c)
                    );
                }
                let _ = writeln!(
                    s,
                    " {pc}[{}] = {}; }}",
                    index(self.c, "i", r, "j", c),
                    math::activation(self.act, "v")
                );
            }
        }
    }
}

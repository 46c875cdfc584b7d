//! The polynomial approximations targets emit for the transcendentals, in one place so
//! that every target computes them alike (Cephes' single-precision `expf`, `logf`, and the
//! rational `erf` of XLA/Eigen). How each is evaluated, and its measured error, is in the
//! target's own math module (`targets/cranelift/src/math.rs`, `targets/hexagon/src/math.rs`).

/// `log2(e)`, to split `x = n·ln2 + r` for `exp`.
pub const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` in two parts, `LN2_HI` exact in few bits (0x3f318000), so `x − n·LN2_HI` is exact.
pub const LN2_HI: f32 = 0.693_359_4;
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `e^r` on `|r| ≤ ln2/2`: `1 + r + r²·P(r)`, highest degree first.
pub const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// `|x|` beyond which `erf(x)` rounds to ±1 in f32.
pub const ERF_CLAMP: f32 = 3.832_507;
/// Odd numerator `x·P(x²)` of erf, highest degree first.
pub const ERF_P: [f32; 7] = [
    -2.726_142_4e-10,
    2.770_681_5e-8,
    -2.101_024e-6,
    -5.692_506_2e-5,
    -7.349_906_4e-4,
    -2.954_6e-3,
    -1.609_603_3e-2,
];
/// Even denominator `Q(x²)` of erf, highest degree first.
pub const ERF_Q: [f32; 5] = [
    -1.456_607_15e-5,
    -2.133_740_5e-4,
    -1.682_827e-3,
    -7.373_329_3e-3,
    -1.426_473_9e-2,
];
/// Cephes' `log(1 + f) ≈ f − f²/2 + f³·P(f)`, highest degree first.
pub const LOG_P: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];
/// The bits of `√½`: `log` reduces its mantissa into `[√½, √2)`.
pub const SQRT_HALF_BITS: u32 = 0x3f35_04f3;

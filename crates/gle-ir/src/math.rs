//! Elementwise functions that glec computes itself instead of calling the C library, so that
//! the JIT can inline them (two lanes at a time) and still agree with the interpreter and the
//! emitted Rust to the last bit: each is a fixed sequence of IEEE additions, multiplications,
//! divisions, comparisons and exponent-bit arithmetic, which `gle-jit` repeats operation for
//! operation (`Emitter::tanh`). Neither Rust nor Cranelift contracts `a·b + c` into a fused
//! multiply-add, so the order written here is the order computed everywhere.

/// Below this magnitude [`tanh`] uses the rational approximation, above it `1 − 2/(e^{2|x|} + 1)`.
pub const TANH_SMALL: f64 = 0.625;
/// Above this magnitude `tanh(x)` rounds to ±1; the exponential's argument is clamped here.
pub const TANH_SATURATE: f64 = 22.0;
/// Numerator coefficients of the rational approximation of `(tanh(x) − x)/x³` in `z = x²` on
/// `|x| < 0.625` (S. L. Moshier, Cephes Math Library, `tanh.c`).
pub const TANH_P: [f64; 3] = [
    -9.643_991_794_250_522e-1,
    -9.928_772_310_019_186e1,
    -1.614_687_684_417_084_5e3,
];
/// Denominator coefficients (leading 1 implied) of the same approximation.
pub const TANH_Q: [f64; 3] = [
    1.128_116_784_916_329_3e2,
    2.235_488_390_601_004_5e3,
    4.844_063_053_251_255e3,
];
/// `1.5·2⁵²`: adding it rounds a number below 2⁵¹ in magnitude to an integer held in the low
/// bits of the sum.
pub const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;
/// log₂ e.
pub const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// The high part of ln 2 (its low 32 bits zero, so `k·LN2_HI` is exact for |k| < 2²⁰).
pub const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
/// ln 2 − [`LN2_HI`].
pub const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// Taylor coefficients 1/n! of eʳ for n = 13 down to 2 (Horner order; the terms 1 + r follow).
pub const EXP_TAYLOR: [f64; 12] = [
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];

/// The hyperbolic tangent, within two units in the last place of the C library's (tested),
/// odd (−0 for −0), ±1 beyond ±22, NaN for NaN.
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    // (The JIT computes both branches and selects; here only the one selected is computed.)
    let magnitude = if a < TANH_SMALL {
        // x + x·z·P(z)/Q(z) with z = x².
        let z = a * a;
        let p = (TANH_P[0] * z + TANH_P[1]) * z + TANH_P[2];
        let q = ((z + TANH_Q[0]) * z + TANH_Q[1]) * z + TANH_Q[2];
        a + a * (z * p / q)
    } else {
        // 1 − 2/(e^{2a} + 1), with a clamped so that the exponential stays finite (a NaN passes
        // the clamp and stays NaN).
        let clamped = if a > TANH_SATURATE { TANH_SATURATE } else { a };
        let e = exp_moderate(clamped + clamped);
        1.0 - 2.0 / (e + 1.0)
    };
    magnitude.copysign(x)
}

/// `eʷ` for `0 ≤ w ≤ 2·TANH_SATURATE` (or NaN): `w = k·ln 2 + r` with `|r| ≤ ln2/2`, then
/// `2ᵏ·eʳ` with eʳ from its Taylor series to the 13th power (truncation below 1e-17).
fn exp_moderate(w: f64) -> f64 {
    let t = w * LOG2_E + ROUND_MAGIC;
    let k = t - ROUND_MAGIC;
    let r = (w - k * LN2_HI) - k * LN2_LO;
    let mut s = EXP_TAYLOR[0];
    for c in &EXP_TAYLOR[1..] {
        s = s * r + c;
    }
    let er = (s * r + 1.0) * r + 1.0;
    er * f64::from_bits(scale_bits(t.to_bits()))
}

/// The bits of `2ᵏ` from the bits of `k + ROUND_MAGIC` (k a small integer).
pub fn scale_bits(t_bits: u64) -> u64 {
    t_bits.wrapping_sub(ROUND_MAGIC.to_bits()).wrapping_add(1023) << 52
}

/// The larger of `x` and `y`: `y` where `x` is NaN or `y > x`, otherwise `x` (so `x` when the
/// two compare equal, as `-0.0` and `0.0` do). Written out instead of `f64::max`, which may
/// return either zero, so that every backend computes the same bits with two comparisons and
/// selections (`Emitter::piecewise` in `gle-jit`).
pub fn max(x: f64, y: f64) -> f64 {
    if x.is_nan() || y > x { y } else { x }
}

/// The smaller of `x` and `y`: `y` where `x` is NaN or `y < x`, otherwise `x` (see [`max`]).
pub fn min(x: f64, y: f64) -> f64 {
    if x.is_nan() || y < x { y } else { x }
}

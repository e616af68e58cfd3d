//! The row `tanh` the generated code calls is `gle_ir::math::tanh` in every lane, bit for bit.

// The builds are `extern "C"` functions of raw pointers, called here directly.
#![allow(unsafe_code)]

use gle_ir::math::{TANH_SATURATE, TANH_SMALL, tanh};
use gle_jit::tanh_rows::{self, TanhRowFn};

/// Every build this CPU runs.
fn builds() -> Vec<(&'static str, TanhRowFn)> {
    let mut out: Vec<(&'static str, TanhRowFn)> = vec![("portable", tanh_rows::portable_tanh_row)];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        out.push(("avx2", tanh_rows::avx2::tanh_row));
    }
    out
}

/// Values on both sides of each branch point, saturated, special, and of both signs, in an
/// order that gives four-lane blocks all small, all large and mixed, and rows of every length
/// (blocks and a tail of one to three).
#[test]
fn the_row_tanh_is_the_scalar_function_in_every_lane() {
    let below = f64::from_bits(TANH_SMALL.to_bits() - 1);
    let mut values = vec![
        0.0,
        -0.0,
        1e-300,
        0.1,
        0.3,
        below, // small
        TANH_SMALL,
        0.7,
        1.5,
        5.0,
        19.0,
        19.1,
        20.0,
        TANH_SATURATE,
        22.5,
        43.0,
        1e300,
        f64::INFINITY, // large
        f64::NAN,
        5e-324,
        f64::MIN_POSITIVE,
        0.5,
        3.0,
        0.2,
        9.0,
        0.6, // mixed
    ];
    values.extend(values.clone().iter().map(|v| -v));
    // A deterministic spread over both branches.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..4000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
        values.push((unit - 0.5) * 8.0);
    }
    for (name, row) in builds() {
        for len in 0..values.len().min(40) {
            let mut out = vec![f64::NAN; len];
            // SAFETY: `values` and `out` hold at least `len` values; `builds` lists only what
            // this CPU runs.
            unsafe { row(values.as_ptr(), out.as_mut_ptr(), len as i64) };
            for (x, y) in values.iter().zip(&out) {
                assert_eq!(y.to_bits(), tanh(*x).to_bits(), "{name}, row of {len}: tanh({x:e})");
            }
        }
        let mut out = vec![0.0; values.len()];
        // SAFETY: as above.
        unsafe { row(values.as_ptr(), out.as_mut_ptr(), values.len() as i64) };
        for (x, y) in values.iter().zip(&out) {
            assert_eq!(y.to_bits(), tanh(*x).to_bits(), "{name}: tanh({x:e})");
        }
    }
}

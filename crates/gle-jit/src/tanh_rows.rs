//! `tanh` over a row of values, compiled ahead of time for four lanes (AVX2) and called by the
//! generated code where a map's `tanh` reads a value an earlier loop of the map stored (a
//! neuron's `r = tanh(ŭ)`).
//!
//! Each lane computes `gle_ir::math::tanh` operation for operation — the rational branch below
//! `TANH_SMALL`, the exponential one above — so results agree bit for bit with the interpreter.
//! Like the inlined `tanh` of the generated code, a block computes a branch only when one of
//! its lanes takes it. Cranelift's two lanes computed the exponential branch for every pair
//! with one large value; late in training most of a deep layer's look-aheads are large, and the
//! maps of MNIST-1D's deepest layers took twice as long as at the start (EXPERIMENTS.md).

#![allow(unsafe_code)]

use gle_ir::math::tanh;

/// The signature of `gle_tanh_row`: `dst[i] = tanh(src[i])` for `i < len`.
pub type TanhRowFn = unsafe extern "C" fn(*const f64, *mut f64, i64);

/// The symbol of the row `tanh` with the address of the build the JIT calls: four lanes where
/// the CPU has AVX2, one otherwise.
pub fn symbol() -> (&'static str, *const u8) {
    (NAME, widest() as *const u8)
}

/// The symbol's name.
pub const NAME: &str = "gle_tanh_row";

/// The widest build this CPU runs.
fn widest() -> TanhRowFn {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return avx2::tanh_row;
    }
    portable_tanh_row
}

/// One lane at a time, with the scalar function.
///
/// # Safety
/// `src` and `dst` point to `len` values each (`len ≥ 0`).
pub unsafe extern "C" fn portable_tanh_row(src: *const f64, dst: *mut f64, len: i64) {
    for i in 0..len.max(0) as usize {
        // SAFETY: `i < len`, and the caller passes arrays of `len` values.
        unsafe { *dst.add(i) = tanh(*src.add(i)) };
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    //! Four lanes.
    use super::tanh;
    use gle_ir::math::{EXP_TAYLOR, LN2_HI, LN2_LO, LOG2_E, ROUND_MAGIC, TANH_P, TANH_Q, TANH_SATURATE, TANH_SMALL};
    use std::arch::x86_64::{
        __m256d, _CMP_GT_OQ, _CMP_LT_OQ, _mm256_add_epi64, _mm256_add_pd, _mm256_and_pd, _mm256_andnot_pd,
        _mm256_blendv_pd, _mm256_castpd_si256, _mm256_castsi256_pd, _mm256_cmp_pd, _mm256_div_pd, _mm256_loadu_pd,
        _mm256_movemask_pd, _mm256_mul_pd, _mm256_or_pd, _mm256_set1_epi64x, _mm256_set1_pd, _mm256_slli_epi64,
        _mm256_storeu_pd, _mm256_sub_epi64, _mm256_sub_pd,
    };

    /// [`super::portable_tanh_row`] four lanes at a time, the last `len % 4` values one at a
    /// time.
    ///
    /// # Safety
    /// The CPU supports AVX2; `src` and `dst` point to `len` values each.
    #[target_feature(enable = "avx2")]
    pub unsafe extern "C" fn tanh_row(src: *const f64, dst: *mut f64, len: i64) {
        let len = len.max(0) as usize;
        let blocks = len / 4;
        for k in 0..blocks {
            // SAFETY: `4k + 3 < len`.
            unsafe {
                let x = _mm256_loadu_pd(src.add(4 * k));
                _mm256_storeu_pd(dst.add(4 * k), tanh4(x));
            }
        }
        for i in 4 * blocks..len {
            // SAFETY: `i < len`.
            unsafe { *dst.add(i) = tanh(*src.add(i)) };
        }
    }

    /// `gle_ir::math::tanh` of each lane.
    #[target_feature(enable = "avx2")]
    fn tanh4(x: __m256d) -> __m256d {
        let sign = _mm256_set1_pd(-0.0);
        let a = _mm256_andnot_pd(sign, x);
        let small = _mm256_cmp_pd::<_CMP_LT_OQ>(a, _mm256_set1_pd(TANH_SMALL));
        let magnitude = match _mm256_movemask_pd(small) {
            0b1111 => rational(a),
            0 => exponential(a),
            _ => _mm256_blendv_pd(exponential(a), rational(a), small),
        };
        // copysign(magnitude, x)
        _mm256_or_pd(_mm256_andnot_pd(sign, magnitude), _mm256_and_pd(sign, x))
    }

    /// `a + a·(z·P(z)/Q(z))` with `z = a²`, as `gle_ir::math::tanh` computes it below
    /// `TANH_SMALL`.
    #[target_feature(enable = "avx2")]
    fn rational(a: __m256d) -> __m256d {
        let c = _mm256_set1_pd;
        let z = _mm256_mul_pd(a, a);
        let p = _mm256_add_pd(_mm256_mul_pd(c(TANH_P[0]), z), c(TANH_P[1]));
        let p = _mm256_add_pd(_mm256_mul_pd(p, z), c(TANH_P[2]));
        let q = _mm256_add_pd(z, c(TANH_Q[0]));
        let q = _mm256_add_pd(_mm256_mul_pd(q, z), c(TANH_Q[1]));
        let q = _mm256_add_pd(_mm256_mul_pd(q, z), c(TANH_Q[2]));
        let ratio = _mm256_div_pd(_mm256_mul_pd(z, p), q);
        _mm256_add_pd(a, _mm256_mul_pd(a, ratio))
    }

    /// `1 − 2/(e^{2a} + 1)`, `a` clamped to `TANH_SATURATE` (a NaN stays NaN), the exponential
    /// as `gle_ir::math::exp_moderate` computes it.
    #[target_feature(enable = "avx2")]
    fn exponential(a: __m256d) -> __m256d {
        let c = _mm256_set1_pd;
        let limit = c(TANH_SATURATE);
        let clamped = _mm256_blendv_pd(a, limit, _mm256_cmp_pd::<_CMP_GT_OQ>(a, limit));
        let w = _mm256_add_pd(clamped, clamped);
        let t = _mm256_add_pd(_mm256_mul_pd(w, c(LOG2_E)), c(ROUND_MAGIC));
        let k = _mm256_sub_pd(t, c(ROUND_MAGIC));
        let r = _mm256_sub_pd(
            _mm256_sub_pd(w, _mm256_mul_pd(k, c(LN2_HI))),
            _mm256_mul_pd(k, c(LN2_LO)),
        );
        let mut s = c(EXP_TAYLOR[0]);
        for &coefficient in &EXP_TAYLOR[1..] {
            s = _mm256_add_pd(_mm256_mul_pd(s, r), c(coefficient));
        }
        let one = c(1.0);
        let er = _mm256_add_pd(_mm256_mul_pd(_mm256_add_pd(_mm256_mul_pd(s, r), one), r), one);
        // 2ᵏ from the bits of k + ROUND_MAGIC, as `gle_ir::math::scale_bits` makes it.
        let bits = _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(ROUND_MAGIC.to_bits() as i64));
        let bits = _mm256_slli_epi64::<52>(_mm256_add_epi64(bits, _mm256_set1_epi64x(1023)));
        let e = _mm256_mul_pd(er, _mm256_castsi256_pd(bits));
        _mm256_sub_pd(one, _mm256_div_pd(c(2.0), _mm256_add_pd(e, one)))
    }
}

//! glec's own `tanh` against the C library's.

use gle_ir::math::tanh;

/// Distance in units in the last place between two finite numbers of the same sign.
fn ulps(a: f64, b: f64) -> u64 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
}

#[test]
fn tanh_is_within_two_ulps_of_the_c_library() {
    let mut worst = (0, 0.0);
    // Dense near the branch point and the saturation, log-spaced over the rest.
    let mut xs: Vec<f64> = (0..200_000).map(|k| k as f64 * 1.2e-4).collect();
    xs.extend((0..4000).map(|k| 0.625 + (k as f64 - 2000.0) * 1e-7));
    xs.extend((0..4000).map(|k| 10f64.powf(-300.0 + k as f64 * 0.0753)));
    for x in xs.into_iter().filter(|x| x.abs() < 40.0) {
        for x in [x, -x] {
            let d = ulps(tanh(x), x.tanh());
            if d > worst.0 {
                worst = (d, x);
            }
        }
    }
    assert!(worst.0 <= 2, "tanh({}) is {} ulps off", worst.1, worst.0);
}

#[test]
fn tanh_keeps_signs_saturates_and_propagates_nan() {
    assert_eq!(tanh(0.0).to_bits(), 0.0f64.to_bits());
    assert_eq!(tanh(-0.0).to_bits(), (-0.0f64).to_bits());
    assert_eq!(tanh(1e-310), 1e-310);
    assert_eq!(tanh(22.0), 1.0);
    assert_eq!(tanh(-1e300), -1.0);
    assert_eq!(tanh(f64::INFINITY), 1.0);
    assert_eq!(tanh(f64::NEG_INFINITY), -1.0);
    assert!(tanh(f64::NAN).is_nan());
    assert_eq!(tanh(-0.3), -tanh(0.3));
}

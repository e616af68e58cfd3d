//! The optimisers against their formulas written out here.

use super::sim;

/// A model whose one learnable is the `3 × neurons` weight matrix `x_y.W` of a tanh layer
/// learning a cosine target, trained by `optimizer` for `steps` steps.
fn learning_layer(neurons: usize, optimizer: &str, steps: usize) -> String {
    format!(
        "neuron N {{\n    param tau_m = 1\n    param tau_r = 0.5\n    param gamma = 0\n    state u\n    let uhat = D[tau_r] u\n    rate r = tanh(uhat)\n    mismatch e = D[tau_m] u - input\n}}\n\
         const beta = 1\n\
         input x[3] = sin(0.3 * linspace(1, 3, 3) * t)\ninput target[{neurons}] = 0.5 * cos(0.2 * t)\n\
         population y[{neurons}] : N\nconnect x -> y : dense(init: uniform(-0.5, 0.5)) learn\n\
         energy E = mismatch(y) + beta * mse(y.r, target)\n\
         learn {{\n    errors instantaneous\n    optimizer {optimizer}\n}}\n\
         run {{\n    dt 0.1\n    steps {steps}\n}}\n"
    )
}

/// Adam is PyTorch's update at every step: `θ ← θ − (lr / (1 − β₁ᵗ))·m / (√s / √(1 − β₂ᵗ) + ε)`,
/// bit for bit, also after `√(1 − β₂ᵗ)` has rounded to 1.0 (from step 37,412 at β₂ = 0.999),
/// where the division by it is skipped. 135 weights: two whole tiles of the bias-corrected
/// update and a part.
#[test]
fn adam_is_pytorchs_update_before_and_after_its_bias_correction_rounds_to_one() {
    let steps = 39_000;
    let (lr, beta1, beta2, eps): (f64, f64, f64, f64) = (1e-3, 0.9, 0.999, 1e-8);
    let optimizer = format!("adam(lr: {lr:e}, beta1: {beta1}, beta2: {beta2}, eps: {eps:e})");
    let mut s = sim(&learning_layer(45, &optimizer, steps), steps);
    let (param, grad) = (s.buffer_id("x_y.W").unwrap(), s.buffer_id("x_y.W.grad").unwrap());
    let n = s.buffer(param).len();
    assert_eq!(n, 135);
    let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
    let mut corrected_to_one = 0;
    for t in 1..=steps {
        s.step().unwrap();
        let (theta, g) = (s.buffer(param).to_vec(), s.buffer(grad).to_vec());
        s.optimizer_step().unwrap();
        let step_size = lr / (1.0 - beta1.powf(t as f64));
        let bias2_sqrt = (1.0 - beta2.powf(t as f64)).sqrt();
        corrected_to_one += usize::from(bias2_sqrt == 1.0);
        for k in 0..n {
            m[k] += (1.0 - beta1) * (g[k] - m[k]);
            v[k] = v[k] * beta2 + (1.0 - beta2) * g[k] * g[k];
            let expected = theta[k] - step_size * (m[k] / (v[k].sqrt() / bias2_sqrt + eps));
            assert_eq!(
                s.buffer(param)[k].to_bits(),
                expected.to_bits(),
                "step {t}, element {k}"
            );
        }
    }
    assert!(corrected_to_one > 1000, "the run reaches steps where √(1 − β₂ᵗ) is 1.0");
}

/// `Reciprocal::divide` is the correctly rounded division for Adam's bias corrections at every
/// step until they round to 1.0 and for other divisors, on quotients closest to midpoints
/// between doubles (where a wrong rounding would show), at both ends of its domain and on
/// `+0`, `+∞` and NaN.
#[test]
fn reciprocal_division_is_the_correctly_rounded_quotient() {
    use gle_runtime::optim::Reciprocal;

    let check = |c: f64, x: f64| {
        let r = Reciprocal::new(c).unwrap();
        let (got, want) = (r.divide(x), x / c);
        assert_eq!(got.to_bits(), want.to_bits(), "{x:e} / {c:e}: {got:e}, not {want:e}");
    };
    // Doubles `x` whose `x / c` lies nearest the midpoint above `q` (and their neighbours).
    let near_midpoints = |c: f64, q: f64| {
        let midpoint = q + (f64::from_bits(q.to_bits() + 1) - q) / 2.0;
        let x = midpoint * c;
        (-3i64..=3).map(move |k| f64::from_bits(x.to_bits().wrapping_add_signed(k)))
    };
    let mut divisors: Vec<f64> = Vec::new();
    for beta2 in [0.999f64, 0.99, 0.5] {
        divisors.extend(
            (1..)
                .map(|t| (1.0 - beta2.powf(t as f64)).sqrt())
                .take_while(|&c| c < 1.0),
        );
    }
    divisors.extend([2f64.powi(-64), 0.5, 0.75, 1.0 - f64::EPSILON / 2.0, 0.1, 1.0 / 3.0]);
    for &c in &divisors {
        for x in [
            0.0,
            f64::INFINITY,
            f64::NAN,
            2f64.powi(-537),
            2f64.powi(512),
            1.0,
            c,
            0.3,
        ] {
            check(c, x);
        }
    }
    // The first 2,000 corrections of β₂ = 0.999 (the smallest divisors) and the extremes,
    // 300 near-midpoint quotients each; every other divisor, 20.
    let mut rng = gle_runtime::rng::Rng::new(7, 0);
    // A double in [1, 2) times 2^e, e drawn from `exponents`.
    let mut draw = |exponents: std::ops::Range<i32>| {
        let e = exponents.start + (rng.next_u64() % exponents.len() as u64) as i32;
        f64::from_bits(rng.next_u64() >> 12 | 1f64.to_bits()) * 2f64.powi(e)
    };
    for (i, &c) in divisors.iter().enumerate() {
        let cases = if i < 2_000 || i + 6 >= divisors.len() { 300 } else { 20 };
        for _ in 0..cases {
            let q = draw(-500..500);
            for x in near_midpoints(c, q) {
                check(c, x);
                check(c, -x);
            }
            check(c, draw(-537..512));
        }
    }
    assert!(
        Reciprocal::new(1.0).is_none()
            && Reciprocal::new(2f64.powi(-65)).is_none()
            && Reciprocal::new(f64::NAN).is_none()
    );
}

/// Adam finds a parameter it leaves infinite or NaN in both of its loops: while its bias
/// correction divides (β₂ = 0.999) and where it is 1.0 from the first step (β₂ = 0). A
/// learning rate near the largest double overflows the weights.
#[test]
fn adam_reports_a_parameter_it_overflows() {
    for beta2 in [0.999, 0.0] {
        let mut s = sim(&learning_layer(70, &format!("adam(lr: 1e308, beta2: {beta2})"), 10), 10);
        let error = (0..10)
            .find_map(|_| s.step().err().or_else(|| s.optimizer_step().err()))
            .expect("the weights overflow");
        assert!(
            error.message.contains("parameter `x_y.W` is") && error.message.contains("after the optimiser step"),
            "β₂ = {beta2}: {}",
            error.message
        );
    }
}

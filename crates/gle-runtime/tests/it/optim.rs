//! The optimisers against their formulas written out here.

use super::sim;

/// Adam is PyTorch's update at every step: `θ ← θ − (lr / (1 − β₁ᵗ))·m / (√s / √(1 − β₂ᵗ) + ε)`,
/// bit for bit, also after `√(1 − β₂ᵗ)` has rounded to 1.0 (from step 37,412 at β₂ = 0.999),
/// where the division by it is skipped.
#[test]
fn adam_is_pytorchs_update_before_and_after_its_bias_correction_rounds_to_one() {
    let steps = 39_000;
    let (lr, beta1, beta2, eps): (f64, f64, f64, f64) = (1e-3, 0.9, 0.999, 1e-8);
    let src = format!(
        "neuron N {{\n    param tau_m = 1\n    param tau_r = 0.5\n    param gamma = 0\n    state u\n    let uhat = D[tau_r] u\n    rate r = tanh(uhat)\n    mismatch e = D[tau_m] u - input\n}}\n\
         const beta = 1\n\
         input x[3] = sin(0.3 * linspace(1, 3, 3) * t)\ninput target[2] = 0.5 * cos(0.2 * t)\n\
         population y[2] : N\nconnect x -> y : dense(init: uniform(-0.5, 0.5)) learn\n\
         energy E = mismatch(y) + beta * mse(y.r, target)\n\
         learn {{\n    errors instantaneous\n    optimizer adam(lr: {lr:e}, beta1: {beta1}, beta2: {beta2}, eps: {eps:e})\n}}\n\
         run {{\n    dt 0.1\n    steps {steps}\n}}\n"
    );
    let mut s = sim(&src, steps);
    let (param, grad) = (s.buffer_id("x_y.W").unwrap(), s.buffer_id("x_y.W.grad").unwrap());
    let n = s.buffer(param).len();
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

//! Rate noise, synaptic filters and low-passed targets (LE paper Fig. 4c; math.md §10.5).

use crate::{buf, sim};

const LE: &str = "neuron Le {\n    param tau = 1\n    param gamma = 0\n    state u\n    let uhat = D[tau] u\n    rate r = uhat + noise(sigma)\n    mismatch e = D[tau] u - input\n}\n";

/// `noise(σ)` adds σ·ξ to the rate, ξ standard normal, independent across neurons, batch rows
/// and steps, and leaves φ' (and so ŭ) untouched.
#[test]
fn rate_noise_has_the_requested_spread_and_no_memory() {
    let src = format!(
        "const sigma = 0.5\n{LE}input x[50] = 1\npopulation p[50] : Le\nconnect x -> p : identity\nrun {{\n    dt 0.1\n    batch 4\n    steps 200\n}}\n"
    );
    let mut s = sim(&src, 200);
    let (mut sum, mut sq, mut lag, mut count) = (0.0, 0.0, 0.0, 0.0);
    let mut previous: Option<Vec<f64>> = None;
    for _ in 0..200 {
        s.step().unwrap();
        let (r, uhat, slope) = (buf(&s, "p.r"), buf(&s, "p.uhat"), buf(&s, "p.slope"));
        assert!(slope.iter().all(|&d| d == 1.0), "φ' of a noisy linear rate is 1");
        let xi: Vec<f64> = r.iter().zip(&uhat).map(|(r, u)| (r - u) / 0.5).collect();
        if let Some(p) = &previous {
            lag += xi.iter().zip(p).map(|(a, b)| a * b).sum::<f64>();
        }
        sum += xi.iter().sum::<f64>();
        sq += xi.iter().map(|v| v * v).sum::<f64>();
        count += xi.len() as f64;
        previous = Some(xi);
    }
    // 40,000 draws: the standard error of the mean is 0.005, of the variance about 0.007.
    let (mean, var) = (sum / count, sq / count);
    assert!(mean.abs() < 0.025, "mean {mean}");
    assert!((var - 1.0).abs() < 0.035, "variance {var}");
    assert!((lag / count).abs() < 0.025, "correlation between steps {}", lag / count);
}

/// The same seed and step give the same noise; another seed another noise.
#[test]
fn rate_noise_is_determined_by_the_seed() {
    let src = |seed: u64| {
        format!(
            "const sigma = 1\n{LE}input x[3] = 0\npopulation p[3] : Le\nconnect x -> p : identity\nrun {{\n    dt 0.1\n    seed {seed}\n    steps 5\n}}\n"
        )
    };
    let noise = |seed| {
        let mut s = sim(&src(seed), 5);
        (0..5)
            .map(|_| {
                s.step().unwrap();
                buf(&s, "p.noise")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(noise(1), noise(1));
    assert_ne!(noise(1), noise(2));
}

/// A synapse with τ_s low-passes what it transmits: after n steps of a unit input the filtered
/// value is 1 − (1 − dt/τ_s)ⁿ (forward Euler), and τ_s = dt transmits the input unchanged.
#[test]
fn synaptic_filter_is_a_first_order_low_pass() {
    for (tau_s, dt) in [(0.5f64, 0.1f64), (0.1, 0.1)] {
        let src = format!(
            "const sigma = 0\n{LE}input x[1] = 1\npopulation p[1] : Le\nconnect x -> p : dense(init: 2, synapse: {tau_s})\nrun {{\n    dt {dt}\n    steps 30\n}}\n"
        );
        let mut s = sim(&src, 30);
        for n in 1..=30 {
            s.step().unwrap();
            let expected = 1.0 - (1.0 - dt / tau_s).powi(n);
            let got = buf(&s, "x_p.rsyn")[0];
            assert!((got - expected).abs() < 1e-14, "τ_s={tau_s} n={n}: {got} vs {expected}");
            assert_eq!(
                buf(&s, "p.input")[0],
                2.0 * got,
                "the projection reads the filtered value"
            );
        }
    }
}

/// `lowpass(target, τ)` filters the target the error compares with; τ = 0 is no filter.
#[test]
fn low_passed_target_follows_the_filter() {
    let src = |tau: f64| {
        format!(
            "const sigma = 0\n{LE}input x[1] = 0\ninput y[1] = 1\npopulation p[1] : Le\nconnect x -> p : dense(init: 0)\nenergy E = mismatch(p) + mse(p.r, lowpass(y, {tau}))\nlearn {{ errors instantaneous }}\nrun {{\n    dt 0.1\n    steps 20\n}}\n"
        )
    };
    let mut s = sim(&src(0.4), 20);
    for n in 1..=20 {
        s.step().unwrap();
        let expected = 1.0 - (1.0f64 - 0.1 / 0.4).powi(n);
        let got = buf(&s, "lowpass(y)")[0];
        assert!((got - expected).abs() < 1e-14, "n={n}: {got} vs {expected}");
    }
    let unfiltered = sim(&src(0.0), 20);
    assert!(unfiltered.buffer_id("lowpass(y)").is_none());
}

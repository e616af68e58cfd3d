//! Generated input streams are a function of the seed, the input's name and the step only.

use crate::{buf, sim};

const NEURON: &str = "neuron N {\n    state u\n    rate r = u\n    mismatch e = D[1] u - input\n}\n";

fn model(before_input: &str, steps: usize) -> String {
    format!(
        "{NEURON}{before_input}input x[3] = smooth(square(t / 4 + uniform(0, 1)) + normal(0, 0.1), sigma_steps: 5)\n\
         population p[3] : N\nconnect x -> p : identity\nrun {{\n    dt 0.1\n    batch 2\n    steps {steps}\n}}\n"
    )
}

/// The input `x` of the first `steps` steps of a simulation prepared for `prepared` steps.
fn inputs(src: &str, prepared: usize, steps: usize) -> Vec<Vec<f64>> {
    let mut s = sim(src, prepared);
    (0..steps)
        .map(|_| {
            s.step().unwrap();
            buf(&s, "x")
        })
        .collect()
}

/// The stream of input `x` of the model in `src`, prepared for `steps` steps of batch 2 with
/// the model's seed.
fn stream(src: &str, steps: usize) -> gle_runtime::inputs::InputStream {
    let s = sim(src, steps);
    let seed = s.model.protocol.seed;
    gle_runtime::inputs::InputStream::new(
        &s.model.inputs[0],
        &s.model,
        2,
        steps,
        seed,
        std::path::Path::new("."),
        &[],
    )
    .unwrap()
}

/// A comment or another declaration before an input does not change its random draws.
#[test]
fn random_inputs_do_not_depend_on_where_they_are_written() {
    let plain = inputs(&model("", 100), 100, 100);
    let edited = inputs(&model("// the driving signal\nconst unused = 3\n\n", 100), 100, 100);
    assert_eq!(plain, edited);
    // (and the draws do differ between streams and steps)
    assert!(plain[0][0] != plain[0][3] && plain[0][0] != plain[50][0]);
}

/// A simulation allocated for fewer steps than the protocol (`glec run --steps N`) sees the
/// smoothed inputs of the whole run, up to its last step (smoothing looks ahead).
#[test]
fn a_run_cut_short_sees_the_inputs_of_the_full_run() {
    let src = model("", 400);
    let full = inputs(&src, 400, 60);
    let short = inputs(&src, 60, 60);
    for (n, (a, b)) in full.iter().zip(&short).enumerate() {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "step {n}: {a:?} vs {b:?}"
        );
    }
}

/// A smoothed input, prepared block by block as the run reaches it, is the smoothing of the
/// whole unsmoothed series: across the blocks, at both ends, and when a step is asked for
/// again after later ones (a resumed run).
#[test]
fn smoothed_inputs_prepared_as_the_run_goes_are_the_whole_series_smoothed() {
    let steps = 2600;
    let raw_model = model("", steps).replace(
        "smooth(square(t / 4 + uniform(0, 1)) + normal(0, 0.1), sigma_steps: 5)",
        "square(t / 4 + uniform(0, 1)) + normal(0, 0.1)",
    );
    let raw: Vec<f64> = inputs(&raw_model, steps, steps).concat();
    let expected = gle_runtime::inputs::smooth(&raw, steps, 6, 5.0);
    let smoothed = inputs(&model("", steps), steps, steps).concat();
    assert_eq!(smoothed.len(), expected.len());
    for (k, (a, b)) in smoothed.iter().zip(&expected).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "step {}, value {}: {a} vs {b}", k / 6, k % 6);
    }
    let input = stream(&model("", steps), steps);
    let mut again = vec![0.0; 6];
    for n in [2500, 17, 2599, 1024, 1023] {
        input.fill(n, &[], 0.1, &mut again).unwrap();
        assert_eq!(again, expected[n * 6..(n + 1) * 6], "step {n}");
    }
}

/// Gaussian smoothing is scipy's `gaussian_filter1d` (`truncate = 4`, `mode = 'reflect'`):
/// against the formula written out, with the index reflected at every tap, bit for bit —
/// in the interior, at both ends, across the blocks it works in, and for series shorter than
/// the kernel's radius.
#[test]
fn smoothing_is_the_reflected_gaussian_filter() {
    let reference = |raw: &[f64], steps: usize, row: usize, sigma: f64| -> Vec<f64> {
        let radius = (4.0 * sigma + 0.5) as isize;
        let w: Vec<f64> = (-radius..=radius)
            .map(|k| (-0.5 * (k * k) as f64 / (sigma * sigma)).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let n = steps as isize;
        let mut out = vec![0.0; steps * row];
        for s in 0..n {
            for (k, wk) in w.iter().enumerate() {
                // d c b a | a b c d | d c b a, repeated.
                let mut i = (s + k as isize - radius).rem_euclid(2 * n);
                if i >= n {
                    i = 2 * n - 1 - i;
                }
                for c in 0..row {
                    out[s as usize * row + c] += (wk / total) * raw[i as usize * row + c];
                }
            }
        }
        out
    };
    let mut rng = gle_runtime::rng::Rng::new(7, 11);
    for (steps, row, sigma) in [(40, 3, 2.0), (5, 2, 3.0), (1, 1, 1.5), (64, 1, 5.0), (600, 2, 3.0)] {
        let raw: Vec<f64> = (0..steps * row).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let smoothed = gle_runtime::inputs::smooth(&raw, steps, row, sigma);
        let expected = reference(&raw, steps, row, sigma);
        assert_eq!(smoothed.len(), expected.len());
        for (k, (a, b)) in smoothed.iter().zip(&expected).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "steps {steps}, sigma {sigma}, value {k}: {a} vs {b}"
            );
        }
    }
}

/// Ornstein–Uhlenbeck noise, advanced as the run reaches each step, is the process written out
/// (x ← x − dt·x/τ + σ·√(2·dt/τ)·ξ from 0, one generator per input), bit for bit, also when an
/// earlier step is asked for again.
#[test]
fn ou_noise_advanced_as_the_run_goes_is_the_process_written_out() {
    let (steps, dt, tau, sigma): (usize, f64, f64, f64) = (300, 0.01, 0.5, 0.3);
    let src = format!(
        "{NEURON}input x[3] = ou(tau: {tau}, sigma: {sigma})\npopulation p[3] : N\nconnect x -> p : identity\nrun {{\n    dt {dt}\n    batch 2\n    seed 4\n    steps {steps}\n}}\n"
    );
    let mut rng = gle_runtime::rng::Rng::new(4, gle_runtime::rng::name_hash("ou x"));
    let kick = sigma * (2.0 * dt / tau).sqrt();
    let mut x = vec![0.0; 6];
    let mut expected = Vec::new();
    for _ in 0..steps {
        expected.push(x.clone());
        for v in &mut x {
            *v += -dt * *v / tau + kick * rng.normal(0.0, 1.0);
        }
    }
    assert_eq!(inputs(&src, steps, steps), expected);
    let input = stream(&src, steps);
    let mut again = vec![0.0; 6];
    for n in [250, 3, 299, 0, 100] {
        input.fill(n, &[], dt, &mut again).unwrap();
        assert_eq!(again, expected[n], "step {n}");
    }
    assert!(input.fill(steps, &[], dt, &mut again).is_err());
}

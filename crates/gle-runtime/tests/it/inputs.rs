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

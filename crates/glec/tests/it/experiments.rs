//! CI-sized versions of the papers' experiments (EXPERIMENTS.md): short runs of the bundled
//! models through `glec run` with asserted thresholds, so a regression in any stage (front end,
//! derivation, JIT, optimiser, inputs) breaks the build.

use crate::glec;

/// The learned parameters `glec run` prints (`  name = [v, …]`), in order.
fn learned(stdout: &str) -> Vec<(String, Vec<f64>)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (name, values) = l.trim().split_once(" = [")?;
            let values = values.strip_suffix(']')?;
            let parsed: Option<Vec<f64>> = values.split(", ").map(|v| v.parse().ok()).collect();
            Some((name.to_string(), parsed?))
        })
        .collect()
}

fn run_learned(model: &str, steps: &str) -> Vec<(String, Vec<f64>)> {
    let out = glec(&["run", model, "--steps", steps]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    learned(&String::from_utf8_lossy(&out.stdout))
}

/// The LagLine teacher: w = (1, 2), τᵐ = (1, 2).
const TEACHER: [(&str, f64); 4] = [("x_h.W", 1.0), ("h.tau_m", 1.0), ("h_y.W", 2.0), ("y.tau_m", 2.0)];

/// GLE (Fig. 5): after 100,000 of the 405,000 steps the student's weights and time constants are
/// within 1e-3 relative of the teacher's (measured: ≤ 4.1e-4; Adam's constant lr keeps them
/// fluctuating at that scale for the rest of the run, see EXPERIMENTS.md).
#[test]
fn lagline_gle_student_recovers_the_teacher() {
    let learned = run_learned("models/gle_lagline.gle", "100000");
    assert_eq!(learned.len(), TEACHER.len(), "{learned:?}");
    for ((name, values), (teacher_name, teacher)) in learned.iter().zip(TEACHER) {
        assert_eq!(name, teacher_name);
        let rel = (values[0] - teacher).abs() / teacher;
        assert!(
            rel < 1e-3,
            "{name} = {} is {rel:.2e} from the teacher's {teacher}",
            values[0]
        );
    }
}

/// The instantaneous-error baseline does not converge: after the same 100,000 steps its first
/// weight is more than 50 % away from the teacher's (measured: x_h.W ≈ −0.055, both τᵐ pinned at
/// the 0.1 clamp).
#[test]
fn lagline_bp_student_does_not_recover_the_teacher() {
    let learned = run_learned("models/gle_lagline_bp.gle", "100000");
    let (name, w) = &learned[0];
    assert_eq!(name, "x_h.W");
    assert!(
        (w[0] - 1.0).abs() > 0.5,
        "x_h.W = {} came close to the teacher's 1",
        w[0]
    );
}

/// The loss of each phase `glec run` prints (`name  steps  loss L …`).
fn phase_losses(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?.to_string();
            let loss = l.split("loss ").nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((name, loss))
        })
        .collect()
}

/// The test-window MSE of a Fourier-synthesis model's full run (the test phase's loss is
/// ½·MSE, averaged over its steps).
fn fourier_test_mse(model: &str) -> f64 {
    let out = glec(&["run", model]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let losses = phase_losses(&String::from_utf8_lossy(&out.stdout));
    let test = losses.iter().find(|(n, _)| n == "test").expect("a test phase");
    2.0 * test.1
}

/// LE Fourier synthesis (LE Fig. 2a, test-facts F1), the full 600 ms: the LE network tracks the
/// 20 Hz sawtooth (test MSE < 0.03; measured 0.0098), the same network without prospective
/// rates does not (> 0.3, about predicting 0; measured 0.79).
#[test]
fn le_fourier_synthesis_tracks_only_with_prospective_rates() {
    let le = fourier_test_mse("models/le_fourier.gle");
    assert!(le < 0.03, "LE test MSE {le}");
    let lagging = fourier_test_mse("models/le_fourier_nonprospective.gle");
    assert!(lagging > 0.3, "non-prospective test MSE {lagging}");
}

/// The test accuracies (in %) of a run's `test` phases, in order.
fn test_accuracies(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter(|l| l.starts_with("test"))
        .filter_map(|l| l.split("accuracy ").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// LE classification ≈ backprop (LE Fig. 2b on MNIST-1D), two epochs: the LE MLP learns (test
/// accuracy above 25 %, chance is 10 %) and stays within 5 points of the same MLP trained by
/// backprop from the same initial weights (measured: LE 26.6 / 34.1 %, backprop 26.5 / 31.2 %).
#[test]
fn le_mlp_tracks_backprop_on_mnist1d() {
    let out = glec(&["run", "models/le_mnist1d_mlp.gle", "--steps", "10000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let le = test_accuracies(&String::from_utf8_lossy(&out.stdout));
    let bp: Vec<f64> = crate::backprop::backprop_test_accuracy(2, 42)
        .iter()
        .map(|a| 100.0 * a)
        .collect();
    assert_eq!(le.len(), 2, "{le:?}");
    for (epoch, (le, bp)) in le.iter().zip(&bp).enumerate() {
        assert!(*le > 25.0, "epoch {}: LE test accuracy {le} %", epoch + 1);
        assert!(
            (le - bp).abs() < 5.0,
            "epoch {}: LE {le} % vs backprop {bp} %",
            epoch + 1
        );
    }
}

/// The mean test accuracy (%) over the last `n` test phases of a run.
fn final_accuracy(args: &[&str], n: usize) -> f64 {
    let out = glec(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let acc = test_accuracies(&String::from_utf8_lossy(&out.stdout));
    assert!(acc.len() >= n, "{acc:?}");
    acc[acc.len() - n..].iter().sum::<f64>() / n as f64
}

/// Dendritic microcircuits on the bars task (LE Fig. 3) at a presentation time of 1 ms, far
/// below τ_eff ≈ 5.3 ms (1000 epochs of 10 steps): the LE microcircuit classifies all eight
/// patterns (measured 100 %), the original one does not (measured 25–42 %). Thresholds: ≥ 87.5 %
/// (7 of 8) and ≤ 62.5 % (5 of 8), averaged over the last 10 evaluations.
#[test]
fn le_microcircuit_learns_bars_at_short_presentation_times() {
    let le = final_accuracy(&["run", "models/le_microcircuit_bars.gle", "--set", "t_steps=10"], 10);
    assert!(le >= 87.5, "LE microcircuit at T = 1 ms: {le} %");
    let original = final_accuracy(
        &["run", "models/le_microcircuit_bars_original.gle", "--set", "t_steps=10"],
        10,
    );
    assert!(original <= 62.5, "original microcircuit at T = 1 ms: {original} %");
}

/// The accuracy (%) of the first training phase of `model` cut after `steps`.
fn first_train_accuracy(model: &str, steps: &str) -> f64 {
    let out = glec(&["run", model, "--steps", steps]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let train = stdout.lines().find(|l| l.starts_with("train")).expect("a train phase");
    let accuracy = train
        .split("accuracy ")
        .nth(1)
        .and_then(|a| a.split_whitespace().next());
    accuracy
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in `{train}`"))
}

/// MNIST-1D, CI-sized (GLE Figs. 8d and 10f): within the first 20 batches of 100 streamed
/// samples (7,200 steps) both networks classify the samples they learn on well above chance
/// (10 %): > 20 % (measured: GLE 15k 26.8 %, lag front end + LE MLP 36.6 %; the full protocols
/// are in EXPERIMENTS.md).
#[test]
fn mnist1d_networks_learn_within_twenty_batches() {
    for model in ["models/gle_mnist1d_15k.gle", "models/gle_mnist1d_lagnet_le.gle"] {
        let accuracy = first_train_accuracy(model, "7200");
        assert!(accuracy > 20.0, "{model}: {accuracy} %");
    }
}

/// The microcircuit "mimic" task (LE Fig. 5): during self-prediction (a phase that sets the
/// feed-forward rules' rate constant to 0) only the interneuron weights move; then the 1-1-1
/// student's feed-forward weights converge to the teacher's 0.8 and 1.5 from −0.64 and 0.34
/// (measured after the full protocol: 0.7982 and 1.5010; asserted: within 1 %).
#[test]
fn le_microcircuit_mimics_its_teacher() {
    let model = "models/le_microcircuit_mimic.gle";
    let weight = |learned: &[(String, Vec<f64>)], name: &str| {
        learned.iter().find(|(n, _)| n == name).map(|(_, v)| v[0]).unwrap()
    };
    let start = run_learned(model, "1");
    let self_predicted = run_learned(model, "30000");
    for name in ["up1.W", "up2.W"] {
        assert_eq!(weight(&start, name), weight(&self_predicted, name), "{name} moved");
    }
    assert_ne!(weight(&start, "ip.W"), weight(&self_predicted, "ip.W"));
    let out = glec(&["run", model]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let learned = learned(&String::from_utf8_lossy(&out.stdout));
    for (name, teacher) in [("up1.W", 0.8), ("up2.W", 1.5)] {
        let w = weight(&learned, name);
        assert!((w - teacher).abs() < 0.01 * teacher, "{name} = {w}, teacher {teacher}");
    }
}

//! An interrupted run resumed from its checkpoint ends bit-identical to an uninterrupted one.

use gle_runtime::{Hooks, Simulation};
use std::path::Path;

fn simulation(model: &str, overrides: &[(String, f64)]) -> Simulation {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let path = root.join(model);
    let text = match model {
        // Four epochs of the bars task instead of a thousand.
        "le_microcircuit_bars.gle" => std::fs::read_to_string(&path)
            .unwrap()
            .replace("repeat 1000", "repeat 4"),
        // Two short epochs of the rate-noise classifier.
        "le_mnist1d_mlp_rate_noise.gle" => std::fs::read_to_string(&path).unwrap().replace("repeat 50", "repeat 2"),
        _ if model.starts_with('/') => std::fs::read_to_string(model).unwrap(),
        _ => std::fs::read_to_string(&path).unwrap(),
    };
    let root = if model.starts_with('/') {
        Path::new(model).parent().unwrap().to_path_buf()
    } else {
        root
    };
    let (m, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let m = m.unwrap();
    let program = gle_derive::compile(&m).unwrap();
    let steps = Simulation::protocol_steps(&m).unwrap();
    Simulation::new(m, program, &root, steps).unwrap()
}

/// Runs to the end, collecting every phase report; checkpoints every `every` steps.
fn run(
    sim: &mut Simulation,
    every: Option<u64>,
    stop_after: Option<u64>,
) -> (Vec<gle_runtime::PhaseReport>, Vec<(u64, Vec<u8>)>) {
    let mut reports = Vec::new();
    let mut checkpoints = Vec::new();
    if let Some(e) = every {
        sim.enable_checkpoints(e);
    }
    if let Some(s) = stop_after {
        sim.set_step_limit(s);
    }
    sim.run_protocol_with(&mut Hooks {
        observe: &mut |_| Ok(()),
        observe_every: 0,
        report: &mut |r| {
            reports.push(r.clone());
            Ok(())
        },
        save: &mut |step, bytes| {
            checkpoints.push((step, bytes));
            Ok(())
        },
    })
    .unwrap();
    (reports, checkpoints)
}

fn all_buffers(sim: &Simulation) -> Vec<Vec<f64>> {
    (0..sim.program.buffers.len()).map(|k| sim.buffer(k).to_vec()).collect()
}

fn check_resume(model: &str, overrides: &[(String, f64)], every: u64, interrupt: u64) {
    let mut whole = simulation(model, overrides);
    let (reports, _) = run(&mut whole, None, None);
    let mut first = simulation(model, overrides);
    let (_, checkpoints) = run(&mut first, Some(every), Some(interrupt));
    let (at, bytes) = checkpoints.last().expect("a checkpoint was written");
    let mut resumed = simulation(model, overrides);
    resumed.restore(bytes, "checkpoint").unwrap();
    assert_eq!(resumed.steps(), *at);
    let (late_reports, _) = run(&mut resumed, None, None);
    assert_eq!(resumed.steps(), whole.steps());
    // Restoring and the phases (their parameter overrides undone) keep every buffer's guard.
    assert!(whole.guarded() && resumed.guarded(), "{model}: a buffer lost its guard");
    let (a, b) = (all_buffers(&whole), all_buffers(&resumed));
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(
            same,
            "{model}: buffer `{}` differs after resuming",
            whole.program.buffers[k].name
        );
    }
    // The reports after the checkpoint are the uninterrupted run's, bit for bit.
    let tail = &reports[reports.len() - late_reports.len()..];
    for (x, y) in tail.iter().zip(&late_reports) {
        assert_eq!(
            x.loss.map(f64::to_bits),
            y.loss.map(f64::to_bits),
            "{model}: loss of {}",
            x.name
        );
        assert_eq!(x.accuracy, y.accuracy);
        assert_eq!(x.end_step, y.end_step);
    }
}

/// LagLine with Adam, τ clamps and phases (a checkpoint inside the settling phase with the
/// parameter override active, and one in training).
#[test]
fn lagline_resumes_bit_identically() {
    check_resume("gle_lagline_golden.gle", &[], 400, 700);
    check_resume("gle_lagline_golden.gle", &[], 1500, 4000);
}

/// Explicit rules on a dataset held per sample, with a shuffled order per epoch: the checkpoint
/// lands in the middle of an epoch's pass.
#[test]
fn microcircuit_resumes_bit_identically() {
    let overrides = [("eta".to_string(), 0.05)];
    check_resume("le_microcircuit_bars.gle", &overrides, 1000, 2350);
}

/// Rate noise (drawn per step from the seed, the buffer and the step), synaptic filters and a
/// low-passed target: the noise after resuming is the noise the uninterrupted run drew.
#[test]
fn rate_noise_resumes_bit_identically() {
    let overrides = [("n_updates".to_string(), 4.0)];
    check_resume("le_mnist1d_mlp_rate_noise.gle", &overrides, 150, 330);
}

/// The adjoint error mode: the checkpoint lands inside a window (150 steps into the fifth), whose
/// recorded steps it carries.
#[test]
fn adjoint_window_resumes_bit_identically() {
    check_resume("gle_lagnet_adjoint.gle", &[], 9350, 9400);
}

/// A classifier on a small `.npz` dataset (written here) with train and test splits, softmax
/// cross-entropy, Adam, read-out accuracy and the plateau schedule; checkpoints inside a
/// training pass and inside a test pass.
#[test]
fn dataset_classifier_with_plateau_resumes_bit_identically() {
    let dir = std::env::temp_dir().join(format!("glec-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (n_train, n_test, width) = (40, 20, 6);
    let sample = |k: usize| -> (Vec<f64>, f64) {
        let class = k % 3;
        let x: Vec<f64> = (0..width)
            .map(|j| {
                if j / 2 == class {
                    1.0
                } else {
                    0.1 * ((k * 7 + j) % 5) as f64
                }
            })
            .collect();
        (x, class as f64)
    };
    let split = |range: std::ops::Range<usize>| -> (Vec<f64>, Vec<f64>) {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for k in range {
            let (x, y) = sample(k);
            xs.extend(x);
            ys.push(y);
        }
        (xs, ys)
    };
    let (x, y) = split(0..n_train);
    let (xt, yt) = split(n_train..n_train + n_test);
    let npz = gle_runtime::zip::write(&[
        ("x.npy".into(), gle_runtime::npy::encode(&[n_train, width], &x)),
        ("y.npy".into(), gle_runtime::npy::encode(&[n_train], &y)),
        ("x_test.npy".into(), gle_runtime::npy::encode(&[n_test, width], &xt)),
        ("y_test.npy".into(), gle_runtime::npy::encode(&[n_test], &yt)),
    ]);
    std::fs::write(dir.join("toy.npz"), npz).unwrap();
    let model = dir.join("toy.gle");
    std::fs::write(
        &model,
        "neuron N {\n    param tau_m = 1\n    param tau_r = 0.5\n    param gamma = 0\n    state u\n    let uhat = D[tau_r] u\n    rate r = tanh(uhat)\n    mismatch e = D[tau_m] u - input\n}\n\
         neuron Out {\n    param tau = 1\n    state u\n    rate r = D[tau] u\n    mismatch e = D[tau] u - input\n}\n\
         const beta = 1\ndataset toy {\n    file \"toy.npz\"\n    field x = array(\"x\", test: \"x_test\")\n    field y = array(\"y\", test: \"y_test\")\n    present hold\n    steps_per_sample 7\n    shuffle 3\n}\n\
         input x[6] = toy.x\npopulation h[8] : N\npopulation out[3] : Out\n\
         connect x -> h : dense(bias: fan_in_uniform) learn\nconnect h -> out : dense(bias: fan_in_uniform) learn\n\
         energy E = mismatch(h, out) + beta * cross_entropy(out.r, toy.y)\n\
         learn {\n    optimizer adam(lr: 0.02)\n    plateau plateau(patience: 0, factor: 0.5)\n}\n\
         run {\n    dt 0.25\n    batch 4\n    seed 9\n    repeat 6 {\n        phase train { data toy.train }\n        phase test { data toy.test  learn off  beta 0 }\n    }\n    readout argmax(sample_sum(out.r))\n    metrics loss, accuracy\n}\n",
    )
    .unwrap();
    let path = model.to_str().unwrap().to_string();
    // 70 steps per train pass, 35 per test pass: 105 steps per epoch.
    check_resume(&path, &[], 50, 130);
    check_resume(&path, &[], 90, 200);
    let mut sim = simulation(&path, &[]);
    let (reports, _) = run(&mut sim, None, None);
    assert!(
        reports.iter().any(|r| r.lr_scale < 1.0),
        "the plateau schedule lowered the rate at least once"
    );
    let last_test = reports.iter().rev().find(|r| r.name == "test").unwrap();
    assert!(
        last_test.accuracy.unwrap() > 0.9,
        "the toy task is learned: {last_test:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

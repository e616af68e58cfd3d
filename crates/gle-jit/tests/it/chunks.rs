//! Runs of steps taken in one call of the compiled loop (`StepKernel::run_steps`, which the
//! protocol uses between the steps it must observe) against the same protocol step by step.

use crate::equivalence::{ABSORBED_BLOWUP, models};
use gle_jit::TeamSplit;
use gle_runtime::{Hooks, PhaseReport, Simulation};
use std::path::Path;

/// What a protocol run produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    reports: Vec<PhaseReport>,
    checkpoints: Vec<(u64, Vec<u8>)>,
    /// `(steps taken, every buffer's bits)` after each step whose index is a multiple of 10.
    observed: Vec<(u64, Vec<u64>)>,
    /// Every buffer's bits at the end.
    last: Vec<u64>,
    error: Option<String>,
}

/// Runs the protocol of the model in `text` for at most `limit` steps, with the JIT on
/// `threads` threads, checkpoints every 61 steps and the observer needing every
/// `observe_every`-th step (1: each step is taken alone). Returns the outcome and how many
/// times the observer was called.
fn run(
    text: &str,
    base: &Path,
    batch: Option<usize>,
    limit: u64,
    threads: usize,
    observe_every: u64,
) -> (Outcome, u64) {
    run_split(text, base, batch, limit, threads, observe_every, TeamSplit::Auto).0
}

/// [`run`] with a team's work shared as `split` says; also whether the team ran whole
/// statements.
fn run_split(
    text: &str,
    base: &Path,
    batch: Option<usize>,
    limit: u64,
    threads: usize,
    observe_every: u64,
    split: TeamSplit,
) -> ((Outcome, u64), bool) {
    let overrides: Vec<(String, f64)> = batch.map(|b| ("batch".to_string(), b as f64)).into_iter().collect();
    let (model, diags) = gle_ir::check_source_with("model.gle", text, &overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let sgd = gle_runtime::sgd_learnables(&model, &program);
    let kernel = gle_jit::compile_team(&program, model.protocol.batch, threads, &sgd, split).unwrap();
    let whole = kernel.statement_threads().is_some();
    let steps = Simulation::protocol_steps(&model).unwrap();
    let mut sim = Simulation::new(model, program, base, steps).unwrap();
    sim.set_kernel(Box::new(kernel));
    sim.set_step_limit(limit);
    sim.enable_checkpoints(61);
    let bits = |s: &Simulation| -> Vec<u64> {
        (0..s.program.buffers.len())
            .flat_map(|b| s.buffer(b).iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            .collect()
    };
    let (mut reports, mut checkpoints, mut observed, mut calls) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let result = sim.run_protocol_with(&mut Hooks {
        observe: &mut |s| {
            calls += 1;
            if (s.steps() - 1).is_multiple_of(10) {
                observed.push((s.steps(), bits(s)));
            }
            Ok(())
        },
        observe_every,
        report: &mut |r| {
            reports.push(r.clone());
            Ok(())
        },
        save: &mut |step, bytes| {
            checkpoints.push((step, bytes));
            Ok(())
        },
    });
    let outcome = Outcome {
        reports,
        checkpoints,
        observed,
        last: bits(&sim),
        error: result.err().map(|e| e.message),
    };
    ((outcome, calls), whole)
}

/// Every bundled model gives the same reports (loss, accuracy), checkpoints, observed states
/// and final state, to the bit, whether its protocol takes the steps between observations in
/// one call (with the optimiser between them) or one by one; every model is taken in runs (the
/// adjoint one only while it does not learn: its window works around every learning step).
#[test]
fn runs_of_steps_equal_single_steps_on_every_bundled_model() {
    let mut chunked = Vec::new();
    for path in models() {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Data models at a large batch: a training and a test phase within a few hundred steps.
        // (The bars dataset has a few samples: its own batch.)
        let batch = (text.contains("data ") && !name.contains("bars")).then_some(1000);
        let limit = if text.contains("data ") { 300 } else { 700 };
        let (one_by_one, calls) = run(&text, path.parent().unwrap(), batch, limit, 1, 1);
        let (runs, fewer_calls) = run(&text, path.parent().unwrap(), batch, limit, 1, 10);
        assert_eq!(one_by_one.error, None, "{name}");
        assert!(one_by_one.observed.len() as u64 >= limit.min(calls) / 10, "{name}");
        assert!(one_by_one == runs, "{name}: runs of steps differ from single steps");
        if fewer_calls < calls {
            chunked.push(name);
        }
    }
    assert_eq!(chunked.len(), models().len(), "{chunked:?}");
}

/// A team takes the steps of a run one call at a time, each with the optimiser's step before
/// it (shared between the threads), with the results of one thread step by step: LagLine (few
/// parameters), MNIST-1D 15k at batch 1000 (each statement split by rows) and at batch 1 (each
/// layer on one thread, its parameters updated first by that thread).
#[test]
fn a_team_takes_runs_of_steps_too() {
    let cases = [
        ("gle_lagline.gle", None, 250),
        ("gle_mnist1d_15k.gle", Some(1000), 100),
        ("gle_mnist1d_15k.gle", Some(1), 300),
    ];
    for (name, batch, limit) in cases {
        let path = models().into_iter().find(|p| p.ends_with(name)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (alone, calls) = run(&text, path.parent().unwrap(), batch, limit, 1, 1);
        let (team, fewer_calls) = run(&text, path.parent().unwrap(), batch, limit, 2, 10);
        assert!(fewer_calls < calls, "{name}");
        assert!(alone == team, "{name}");
    }
}

/// A blow-up inside a run stops it after that step and is reported as step by step, on one
/// thread and on teams of two that split rows or run whole statements: a value the code checks
/// itself (`exp` overflowing), a weight the code updates (found once what it feeds blows up),
/// and a weight the optimiser updates between the steps (the step after it is not taken,
/// whoever updated the weight), in one layer and in the second of two.
#[test]
fn a_blow_up_inside_a_run_is_reported_at_its_step() {
    // `r = exp(u)` overflows at step 88, inside a run (runs end after steps 3, 61, 71, 81, 91…).
    let overflowing = "model unstable\n\
        neuron N {\n    param tau = 5\n    state u\n    rate r = exp(u)\n    mismatch e = D[tau] u - input\n}\n\
        input x[3] = uniform(0, 1)\n\
        population a[3] : N\npopulation b[5] : N\n\
        connect x -> a : dense(init: uniform(0, 5))\nconnect a -> b : dense(init: uniform(0, 5))\n\
        run {\n    dt 0.1\n    batch 4\n    phase quiet { steps 3 learn off }\n    phase rest { steps 197 learn off }\n}\n";
    // The absorbed-weight blow-up with momentum, which the optimiser applies between the steps.
    // Its input changes from step to step: a step not taken leaves the last step's in place.
    let optimised = ABSORBED_BLOWUP
        .replace("sgd(lr: 1e305)", "momentum(lr: 1e300, mu: 0.9)")
        .replace("input x[3] = 1\n", "input x[3] = 1 + 0.1 * sin(t)\n");
    // The same with a hidden layer, in a team running whole statements: the weights blow up on
    // the helper thread.
    let deeper = optimised
        .replace("population y[2] : L\n", "population h[4] : L\npopulation y[2] : L\n")
        .replace(
            "connect x -> y",
            "connect x -> h : dense(init: 0.1) learn\nconnect h -> y",
        )
        .replace("mismatch(y)", "mismatch(h, y)");
    let cases = [
        (overflowing, "`b.r` is inf for neuron 2 (batch row 2) at step 88", true),
        (ABSORBED_BLOWUP, "parameter `x_y.W`", false),
        (
            &optimised,
            "parameter `x_y.W` is -inf at element 0 after the optimiser step of step 4",
            false,
        ),
        (
            &deeper,
            "parameter `x_h.W` is inf at element 0 after the optimiser step of step 4",
            true,
        ),
    ];
    // (`layers`: whether the model has layers enough for a team to run whole statements.)
    for (text, what, layers) in cases {
        let (one_by_one, calls) = run(text, Path::new("."), None, 200, 1, 1);
        let (runs, fewer_calls) = run(text, Path::new("."), None, 200, 1, 10);
        let error = one_by_one.error.clone().expect("the model blows up");
        assert!(error.contains(what), "{error}");
        assert!(
            fewer_calls < calls,
            "{fewer_calls} observer calls in runs, {calls} one by one"
        );
        assert!(one_by_one == runs, "{:?} vs {:?}", one_by_one.error, runs.error);
        for split in [TeamSplit::Rows, TeamSplit::Statements] {
            let ((team, _), whole) = run_split(text, Path::new("."), None, 200, 2, 10, split);
            if split == TeamSplit::Rows || layers {
                assert_eq!(whole, split == TeamSplit::Statements, "{what}");
            }
            assert!(
                one_by_one == team,
                "{:?} vs {:?} on a team ({split:?})",
                one_by_one.error,
                team.error
            );
        }
    }
}

/// An input that cannot be made for a step inside a run (a label outside the classes) ends the
/// run before that step, which then fails as it does step by step.
#[test]
fn a_bad_sample_inside_a_run_fails_at_its_step() {
    let dir = std::env::temp_dir().join(format!("glec-chunk-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x: Vec<f64> = (0..32).map(|k| f64::from(k % 7) / 7.0).collect();
    let y = [0.0, 1.0, 2.0, 5.0, 0.0, 1.0, 2.0, 0.0];
    let npz = gle_runtime::zip::write(&[
        ("x.npy".to_string(), gle_runtime::npy::encode(&[8, 4], &x)),
        ("y.npy".to_string(), gle_runtime::npy::encode(&[8], &y)),
    ]);
    std::fs::write(dir.join("toy.npz"), npz).unwrap();
    let text = "model labels\n\
        neuron L {\n    state u\n    rate r = u\n    mismatch e = D[1] u - input\n}\n\
        dataset toy {\n    file \"toy.npz\"\n    field x = array(\"x\")\n    field y = array(\"y\")\n    present hold\n    steps_per_sample 10\n}\n\
        input x[4] = toy.x\n\
        population out[3] : L\n\
        connect x -> out : dense(init: 0.1) learn\n\
        energy E = mismatch(out) + mse(out.r, toy.y)\n\
        learn {\n    errors instantaneous\n    optimizer sgd(lr: 0.01)\n}\n\
        run {\n    dt 0.1\n    batch 1\n    phase train { data toy.train }\n}\n";
    let (one_by_one, calls) = run(text, &dir, None, 80, 1, 1);
    let (runs, fewer_calls) = run(text, &dir, None, 80, 1, 10);
    std::fs::remove_dir_all(&dir).unwrap();
    let error = one_by_one.error.clone().expect("sample 3 has no class 5");
    assert!(error.contains("label 5 of sample 3 does not fit 3 classes"), "{error}");
    assert_eq!(calls, 30);
    assert!(fewer_calls < calls);
    assert!(one_by_one == runs, "{:?} vs {:?}", one_by_one.error, runs.error);
}

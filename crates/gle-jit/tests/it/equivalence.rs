//! The JIT against the reference interpreter, step by step, on every bundled model.

use gle_jit::TeamSplit;
use gle_runtime::{Simulation, StepKernel};
use std::path::Path;

/// The bundled models, in name order.
pub fn models() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gle"))
        .collect();
    v.sort();
    v
}

/// A simulation of `path` with a small batch (the dynamics do not depend on it), run by the
/// interpreter (`jit_threads` = 0) or by the JIT on that many threads, sharing the work as
/// `split` says.
pub fn simulation(path: &Path, jit_threads: usize, batch: usize, split: TeamSplit) -> Simulation {
    let text = std::fs::read_to_string(path).unwrap();
    let overrides = [("batch".to_string(), batch as f64)];
    let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let sgd = gle_runtime::sgd_learnables(&model, &program);
    let kernel = (jit_threads > 0).then(|| gle_jit::compile_team(&program, batch, jit_threads, &sgd, split).unwrap());
    let steps = Simulation::protocol_steps(&model).unwrap().min(5000);
    let mut sim = Simulation::new(model, program, path.parent().unwrap(), steps).unwrap();
    if let Some(k) = kernel {
        sim.set_kernel(Box::new(k));
    }
    if !sim.model.datasets.is_empty() {
        sim.begin_data_pass(0, false);
    }
    sim
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

/// Every buffer equal within 1e-12 relative after every step of `steps` steps: training steps,
/// except every third block of 50 steps, which computes no gradients (as in a test phase). The
/// JIT absorbs the plain-SGD updates it can (`glec run` does), whose gradients it then never
/// writes: those buffers are the only ones not compared. Returns how many updates it absorbed.
fn compare(path: &Path, steps: usize, batch: usize, jit_threads: usize, split: TeamSplit) -> usize {
    let mut a = simulation(path, 0, batch, split);
    let mut b = simulation(path, jit_threads, batch, split);
    let unwritten: Vec<usize> = b
        .absorbed_updates()
        .iter()
        .map(|&k| b.program.learnables[k].grad)
        .collect();
    for n in 0..steps {
        for s in [&mut a, &mut b] {
            if !s.model.datasets.is_empty() && s.data_steps_left() == 0 {
                s.begin_data_pass(0, false);
            }
        }
        let learning = (n / 50) % 3 != 2;
        for s in [&mut a, &mut b] {
            s.set_learning(learning);
            s.step().unwrap();
            if learning {
                s.optimizer_step().unwrap();
            }
        }
        for k in (0..a.program.buffers.len()).filter(|k| !unwritten.contains(k)) {
            for (x, y) in a.buffer(k).iter().zip(b.buffer(k)) {
                assert!(
                    rel(*x, *y) <= 1e-12,
                    "{}: buffer `{}` differs at step {n}: {x} vs {y}",
                    path.display(),
                    a.program.buffers[k].name
                );
            }
        }
    }
    unwritten.len()
}

/// Every bundled model, 1000 steps, at batch 4 and at batch 1 (where each projection's
/// products share one pass over W); the golden replay streams recorded inputs of batch 4 only.
#[test]
fn jit_matches_the_interpreter_on_every_model() {
    let mut absorbed = 0;
    for path in models() {
        absorbed += compare(&path, 1000, 4, 1, TeamSplit::Auto);
        if !path.display().to_string().contains("golden") {
            compare(&path, 1000, 1, 1, TeamSplit::Auto);
        }
    }
    // The plain-SGD models (le_fourier, le_mnist1d_mlp, …) have updates the JIT absorbs.
    assert!(absorbed >= 5, "{absorbed} absorbed updates");
}

/// Two threads sharing each statement give the same numbers (batch 7: W·x runs one block of
/// four rows, then the last thread a pair and the odd row).
/// At batch 1 on one thread, `W·x` and the gradient of the same W (with plain SGD: the
/// absorbed step that replaces it) run as one pass over W (the issue's plastic layer, in small
/// odd shapes, with biases), and for a layer whose input population learns too, the `Wᵀ·e` that
/// sends its error down joins the pass: every buffer still matches the interpreter after every
/// step, learning or not.
#[test]
fn a_shared_pass_over_w_matches_the_interpreter() {
    let dir = std::env::temp_dir().join(format!("glec-row-pass-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (optimizer, absorbed) in [("sgd(lr: 0.05)", 2), ("adam(lr: 0.01)", 0)] {
        let path = dir.join("plastic.gle");
        std::fs::write(
            &path,
            format!(
                "neuron Layer {{\n    param tau_m = 10\n    param tau_r = 5\n    param gamma = 0\n    state u\n\
                     let uhat = D[tau_r] u\n    rate r = tanh(uhat)\n    mismatch e = D[tau_m] u - input\n}}\n\
                 const beta = 1\n\
                 input x[29] = sin(0.01 * linspace(1, 29, 29) * t)\n\
                 input target[11] = 0.5 * cos(0.02 * t)\n\
                 population h[37] : Layer\n\
                 population y[11] : Layer\n\
                 connect x -> h : dense(init: uniform(-0.3, 0.3), bias: uniform(-0.1, 0.1)) learn\n\
                 connect h -> y : dense(init: uniform(-0.3, 0.3), bias: uniform(-0.1, 0.1)) learn\n\
                 energy E = mismatch(h, y) + beta * mse(y.r, target)\n\
                 learn {{\n    errors instantaneous\n    optimizer {optimizer}\n}}\n\
                 run {{\n    dt 0.1\n    steps 2000\n}}\n"
            ),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (model, diags) = gle_ir::check_source_with("plastic.gle", &text, &[]);
        assert!(diags.is_empty(), "{diags:?}");
        let model = model.unwrap();
        let program = gle_derive::compile(&model).unwrap();
        let sgd = gle_runtime::sgd_learnables(&model, &program);
        let kernel = gle_jit::compile_absorbing(&program, 1, 1, &sgd).unwrap();
        // With SGD, both weights' updates are absorbed (the biases' means are not `e·rᵀ`).
        assert_eq!(kernel.absorbed_updates().len(), absorbed, "{optimizer}");
        assert_eq!(
            kernel.row_passes(),
            2,
            "{optimizer}: W·x and the gradient share the pass"
        );
        assert_eq!(
            kernel.row_passes_with_wt_e(),
            1,
            "{optimizer}: h → y sends h's error down in its pass"
        );
        assert_eq!(compare(&path, 1000, 1, 1, TeamSplit::Auto), absorbed);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jit_on_two_threads_matches_the_interpreter() {
    for path in models() {
        let steps = if path.display().to_string().contains("mnist") {
            100
        } else {
            300
        };
        // The golden replay streams recorded inputs of batch 4.
        let batch = if path.display().to_string().contains("golden") {
            4
        } else {
            7
        };
        compare(&path, steps, batch, 2, TeamSplit::Auto);
    }
}

/// Teams that split rows give each thread rows of the batch (batch 10 on two threads: rows 0–3
/// and 4–9; batch 13 on three: 0–3, 4–7, 8–12; batch 1 on two: the second none) and meet only
/// where the schedule says; teams that run whole statements give each layer's to one thread,
/// with its passes over W (at batch 1 on two threads, batch 2 on three, whichever split the
/// choice would make), or split rows where a model's statements are too few groups.
#[test]
fn jit_teams_match_the_interpreter() {
    for path in models() {
        let name = path.display().to_string();
        if name.contains("golden") {
            continue;
        }
        let steps = if name.contains("mnist") { 60 } else { 150 };
        for (batch, threads) in [(10, 2), (13, 3), (1, 2), (2, 3)] {
            // (A dataset with fewer samples than the batch gives no full batch to run.)
            let probe = simulation(&path, 0, batch, TeamSplit::Auto);
            if !probe.model.datasets.is_empty() && probe.data_steps_left() == 0 {
                continue;
            }
            for split in [TeamSplit::Rows, TeamSplit::Statements] {
                compare(&path, steps, batch, threads, split);
            }
        }
    }
}

/// A team of MNIST-1D 15k that splits rows meets twice per step at batch 100 (before the batch
/// sums, at the end) instead of once per statement: its commits are all exchanges of buffers,
/// done after the team's code. A team that runs whole layers meets once, and the choice takes
/// it at batch 1 and, the busiest of two threads then having ~1.12 even shares of the work, at
/// batch 100 too: each thread's layers consecutive (the statements come layer by layer), with
/// their passes over W at batch 1.
#[test]
fn a_team_meets_only_where_rows_cross() {
    let path = models()
        .into_iter()
        .find(|p| p.ends_with("gle_mnist1d_15k.gle"))
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
    assert!(diags.is_empty(), "{diags:?}");
    let program = gle_derive::compile(&model.unwrap()).unwrap();
    let rows = gle_jit::compile_team(&program, 100, 2, &[], TeamSplit::Rows).unwrap();
    assert_eq!(rows.meetings_per_step(), 2, "{} statements", program.stmts.len());
    assert_eq!(rows.statement_threads(), None);
    assert_eq!(gle_jit::compile(&program, 100).unwrap().meetings_per_step(), 0);
    for batch in [100, 1] {
        let layers = gle_jit::compile_for_threads(&program, batch, 2).unwrap();
        assert_eq!(layers.meetings_per_step(), 1, "batch {batch}");
        let threads = layers.statement_threads().expect("whole statements");
        // Statement 0, the softmax of the output's rates, goes with the output layer's.
        assert!(matches!(program.stmts[0], gle_derive::program::Stmt::Softmax { .. }));
        assert_eq!(threads[0], threads[threads.len() - 1]);
        // The first three hidden layers on one thread, the last three on the other, the output
        // layer with the first ones: two changes in program order.
        let changes = threads.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 2, "batch {batch}: consecutive layers per thread: {threads:?}");
    }
    let layers = gle_jit::compile_for_threads(&program, 1, 2).unwrap();
    assert_eq!(layers.row_passes(), 7, "every layer's W in one pass on its thread");
}

/// The inlined `tanh` computes each lane as `gle_ir::math::tanh` does, bit for bit, whichever
/// branches the two lanes of a pair take (both small, both large, one of each, saturated) and
/// for the odd last element, which calls the shim.
#[test]
fn inlined_tanh_is_the_scalar_function_in_every_lane() {
    let text = "model tanh_lanes\n\
        neuron T {\n    param tau = 1\n    state u\n    rate r = tanh(u)\n    mismatch e = D[tau] u - input\n}\n\
        input x[1] = 0\n\
        population n[15] : T\n\
        connect x -> n : dense(init: 0) fixed\n\
        run {\n    dt 0.1\n    duration 1\n}\n";
    let (model, diags) = gle_ir::check_source_with("tanh_lanes.gle", text, &[]);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let kernel = gle_jit::compile(&program, 1).unwrap();
    let mut sim = Simulation::new(model, program, Path::new("."), 10).unwrap();
    sim.set_kernel(Box::new(kernel));
    // Pairs: (small, small), (large, large), (small, large), (large, small), (saturated,
    // negative small), (negative large, ~0), (at the branch point, just below it), then one.
    let u = [
        0.1, -0.3, 1.5, -4.0, 0.2, 2.0, -7.0, 0.6, 40.0, -0.01, -30.0, 1e-300, 0.7, 0.69, -0.9,
    ];
    let u_id = sim.buffer_id("n.u").unwrap();
    sim.set_buffer(u_id, &u);
    sim.step().unwrap();
    // (The step computes the rate of the state it starts from.)
    let rates = sim.buffer(sim.buffer_id("n.r").unwrap());
    for (k, (x, r)) in u.iter().zip(rates).enumerate() {
        assert_eq!(
            r.to_bits(),
            gle_ir::math::tanh(*x).to_bits(),
            "element {k}: tanh({x}) = {r}, expected {}",
            gle_ir::math::tanh(*x)
        );
    }
    // The arguments cover both branches in both lanes of some pair, and each alone in others.
    let small = |x: f64| x.abs() < gle_ir::math::TANH_SMALL;
    assert!(u.chunks(2).any(|p| p.len() == 2 && small(p[0]) != small(p[1])));
    assert!(u.chunks(2).any(|p| p.len() == 2 && small(p[0]) && small(p[1])));
    assert!(u.chunks(2).any(|p| p.len() == 2 && !small(p[0]) && !small(p[1])));
}

/// The functions the JIT writes as comparisons and selections (`relu`, `hard_sigmoid`,
/// `hard_tanh`, `min`, `max`, `clamp`, `step`, `abs`, and the derivatives `positive` and `sign`)
/// give the interpreter's bits in both lanes of a pair and alone, at NaN, ±0, ±∞ and their
/// breakpoints.
#[test]
fn piecewise_functions_are_the_reference_functions_in_every_lane() {
    // One population per function, its rate the function of the state (and its slope the
    // derivative: `positive`, `sign`, …), each fed by the input and feeding the output.
    let functions = [
        "relu(u)",
        "hard_sigmoid(u)",
        "hard_tanh(u)",
        "min(u, 0.25)",
        "max(u, -0.25)",
        "clamp(u, -0.5, 0.5)",
        "step(u)",
        "abs(u)",
    ];
    let mut text = String::from("model piecewise_lanes\nconst beta = 1\ninput x[1] = 0\ninput target[15] = 0.5\n");
    text += "neuron Out {\n    param tau = 1\n    state u\n    rate r = u\n    mismatch e = D[tau] u - input\n}\n";
    text += "population out[15] : Out\n";
    for (k, f) in functions.iter().enumerate() {
        text += &format!(
            "neuron N{k} {{\n    param tau = 1\n    state u\n    rate r = {f}\n    mismatch e = D[tau] u - input\n}}\n\
             population p{k}[15] : N{k}\nconnect x -> p{k} : dense(init: 0) fixed\nconnect p{k} -> out : dense(init: 0.01) learn\n"
        );
    }
    let populations: Vec<String> = (0..functions.len()).map(|k| format!("p{k}")).collect();
    text += &format!(
        "energy E = mismatch({}, out) + beta * mse(out.r, target)\n\
         learn {{\n    errors instantaneous\n    optimizer sgd(lr: 0.1)\n}}\nrun {{\n    dt 0.1\n    duration 1\n}}\n",
        populations.join(", ")
    );
    let (model, diags) = gle_ir::check_source_with("piecewise_lanes.gle", &text, &[]);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let mut jit = Simulation::new(model.clone(), program.clone(), Path::new("."), 10).unwrap();
    jit.set_kernel(Box::new(gle_jit::compile(&program, 1).unwrap()));
    let mut interp = Simulation::new(model, program.clone(), Path::new("."), 10).unwrap();
    // Pairs (NaN, −0), (0, −∞), (∞, −1), (−0.5, 0.5), (1, 0.25), (−0.25, 2), (−2, tiny), then one.
    let u = [
        f64::NAN,
        -0.0,
        0.0,
        f64::NEG_INFINITY,
        f64::INFINITY,
        -1.0,
        -0.5,
        0.5,
        1.0,
        0.25,
        -0.25,
        2.0,
        -2.0,
        1e-300,
        -1e-300,
    ];
    for sim in [&mut jit, &mut interp] {
        for k in 0..functions.len() {
            let id = sim.buffer_id(&format!("p{k}.u")).unwrap();
            sim.set_buffer(id, &u);
        }
        // NaN and ∞ blow the step up; its buffers are computed all the same.
        assert!(sim.step().is_err());
    }
    let mut compared = 0;
    for (b, decl) in program.buffers.iter().enumerate() {
        let (x, y) = (jit.buffer(b), interp.buffer(b));
        for (k, (x, y)) in x.iter().zip(y).enumerate() {
            // (A NaN's sign and payload depend on operand order in arithmetic, and mean nothing.)
            let same = x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
            assert!(same, "`{}`[{k}]: JIT {x:e}, interpreter {y:e}", decl.name);
            compared += 1;
        }
    }
    assert!(compared > 15 * 3 * functions.len());
}

/// A layer whose plain-SGD weights (which the JIT updates in the step) blow up.
pub const ABSORBED_BLOWUP: &str = "model blowup\n\
    neuron L {\n    state u\n    rate r = u\n    mismatch e = D[1] u - input\n}\n\
    input x[3] = 1\n\
    input target[2] = 1\n\
    population y[2] : L\n\
    connect x -> y : dense(init: 0.1) learn\n\
    energy E = mismatch(y) + mse(y.r, target)\n\
    learn {\n    errors instantaneous\n    optimizer sgd(lr: 1e305)\n}\n\
    run {\n    dt 0.1\n    steps 100\n}\n";

/// A weight the JIT updates in the step and that blows up is named once what it feeds blows up.
#[test]
fn a_blown_up_absorbed_weight_is_named() {
    let (model, diags) = gle_ir::check_source("blowup.gle", ABSORBED_BLOWUP);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let sgd = gle_runtime::sgd_learnables(&model, &program);
    let kernel = gle_jit::compile_absorbing(&program, 1, 1, &sgd).unwrap();
    let mut sim = Simulation::new(model, program, Path::new("."), 100).unwrap();
    sim.set_kernel(Box::new(kernel));
    assert_eq!(sim.absorbed_updates(), &[0]);
    let mut error = None;
    for _ in 0..100 {
        if let Err(e) = sim.step().and_then(|()| sim.optimizer_step()) {
            error = Some(e.message);
            break;
        }
    }
    let error = error.expect("the weights blow up");
    assert!(error.contains("parameter `x_y.W`"), "{error}");
}

/// The JIT checks the values it computes for NaN and Inf itself (the simulation then scans
/// nothing), and a blow-up is reported as the interpreter reports it: the same variable,
/// neuron, batch row and step, alone or in a team.
#[test]
fn blow_ups_are_found_by_the_code_and_reported_as_the_interpreter_does() {
    // `r = exp(ŭ)` overflows after a few steps; the other neurons and rows stay finite longer.
    let text = "model unstable\n\
        neuron N {\n    param tau = 1\n    state u\n    let uhat = D[tau] u\n    rate r = exp(uhat)\n    mismatch e = D[tau] u - input\n}\n\
        input x[3] = uniform(0, 1)\n\
        population a[3] : N\npopulation b[5] : N\n\
        connect x -> a : dense(init: uniform(0, 40))\nconnect a -> b : dense(init: uniform(0, 40))\n\
        run {\n    dt 0.1\n    batch 4\n    steps 200\n}\n";
    let (model, diags) = gle_ir::check_source("unstable.gle", text);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let run = |threads: usize| {
        let mut sim = Simulation::new(model.clone(), program.clone(), Path::new("."), 200).unwrap();
        if threads > 0 {
            let kernel = gle_jit::compile_for_threads(&program, 4, threads).unwrap();
            let watched = program.watched();
            assert!(watched.iter().all(|b| StepKernel::checked_buffers(&kernel).contains(b)));
            sim.set_kernel(Box::new(kernel));
        }
        (0..200)
            .find_map(|_| sim.step().err())
            .expect("the rates overflow")
            .message
    };
    let reference = run(0);
    assert!(reference.contains("numerical blow-up: `"), "{reference}");
    assert_eq!(run(1), reference);
    assert_eq!(run(2), reference);
}

/// Commits that copy (none of the bundled models has one since every commit became an exchange
/// of buffers) still match the interpreter: the swaps of three models turned into copies, alone
/// and in a team.
#[test]
fn copied_commits_match_the_interpreter() {
    for name in ["gle_lagline.gle", "le_chain.gle", "gle_mnist1d_15k.gle"] {
        let path = models().into_iter().find(|p| p.ends_with(name)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let overrides = [("batch".to_string(), 6.0)];
        let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
        assert!(diags.is_empty(), "{diags:?}");
        let model = model.unwrap();
        let mut program = gle_derive::compile(&model).unwrap();
        let swaps = std::mem::take(&mut program.swaps);
        program.commits.extend(swaps);
        let build = |threads: usize| {
            let mut sim = Simulation::new(model.clone(), program.clone(), path.parent().unwrap(), 200).unwrap();
            if threads > 0 {
                sim.set_kernel(Box::new(gle_jit::compile_for_threads(&program, 6, threads).unwrap()));
            }
            if !sim.model.datasets.is_empty() {
                sim.begin_data_pass(0, false);
            }
            sim
        };
        let mut sims = [build(0), build(1), build(2)];
        for n in 0..100 {
            for s in &mut sims {
                s.step().unwrap();
                s.optimizer_step().unwrap();
            }
            for k in 0..sims[0].program.buffers.len() {
                for s in &sims[1..] {
                    assert!(
                        sims[0]
                            .buffer(k)
                            .iter()
                            .zip(s.buffer(k))
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{name}: `{}` differs at step {n}",
                        sims[0].program.buffers[k].name
                    );
                }
            }
        }
    }
}

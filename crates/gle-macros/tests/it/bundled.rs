//! Every bundled model through `model!`, step by step against the reference interpreter.

use gle_runtime::Simulation;
use std::path::Path;

/// Declares each model through the macro and lists `(file stem, constructor)`.
macro_rules! bundled {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(gle_macros::model!($path);)*
        const BUNDLED: &[&str] = &[$(stringify!($name)),*];
        /// The compiled step of model `name` for `batch` rows.
        fn compiled_step(name: &str, batch: usize) -> Box<dyn gle_runtime::StepKernel> {
            $(if name == stringify!($name) {
                return $name::compiled_step(batch);
            })*
            panic!("no model! invocation for `{name}`");
        }
    };
}

bundled!(
    gle_lagline => "../../models/gle_lagline.gle",
    gle_lagline_bp => "../../models/gle_lagline_bp.gle",
    gle_lagline_golden => "../../models/gle_lagline_golden.gle",
    gle_lagnet => "../../models/gle_lagnet.gle",
    gle_lagnet_adjoint => "../../models/gle_lagnet_adjoint.gle",
    gle_mnist1d_15k => "../../models/gle_mnist1d_15k.gle",
    gle_mnist1d_lagnet_le => "../../models/gle_mnist1d_lagnet_le.gle",
    gle_single_neuron => "../../models/gle_single_neuron.gle",
    le_chain => "../../models/le_chain.gle",
    le_chain_nonprospective => "../../models/le_chain_nonprospective.gle",
    le_fourier => "../../models/le_fourier.gle",
    le_fourier_nonprospective => "../../models/le_fourier_nonprospective.gle",
    le_microcircuit_bars => "../../models/le_microcircuit_bars.gle",
    le_microcircuit_bars_original => "../../models/le_microcircuit_bars_original.gle",
    le_microcircuit_mimic => "../../models/le_microcircuit_mimic.gle",
    le_mnist1d_mlp => "../../models/le_mnist1d_mlp.gle",
    le_mnist1d_mlp_fa => "../../models/le_mnist1d_mlp_fa.gle",
    le_mnist1d_mlp_rate_noise => "../../models/le_mnist1d_mlp_rate_noise.gle",
    le_mnist1d_mlp_tau_learning => "../../models/le_mnist1d_mlp_tau_learning.gle",
    le_mnist1d_mlp_tau_noise => "../../models/le_mnist1d_mlp_tau_noise.gle",
);

fn models_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// A simulation of bundled model `name` with a small batch (the dynamics do not depend on it),
/// run by the reference interpreter or, with `compiled`, by the model's `model!` step.
fn simulation(name: &str, batch: usize, compiled: bool) -> Simulation {
    let path = models_dir().join(format!("{name}.gle"));
    let text = std::fs::read_to_string(&path).unwrap();
    let overrides = [("batch".to_string(), batch as f64)];
    let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let steps = Simulation::protocol_steps(&model).unwrap().min(5000);
    let mut sim = Simulation::new(model, program, &models_dir(), steps).unwrap();
    if compiled {
        sim.set_kernel(compiled_step(name, batch));
    }
    sim
}

/// Every buffer within 1e-12 relative after each of `steps` training steps.
fn compare(name: &str, steps: usize, batch: usize) {
    let mut a = simulation(name, batch, false);
    let mut b = simulation(name, batch, true);
    for n in 0..steps {
        for s in [&mut a, &mut b] {
            if !s.model.datasets.is_empty() && s.data_steps_left() == 0 {
                s.begin_data_pass(0, false);
            }
            s.step().unwrap();
            s.optimizer_step().unwrap();
        }
        assert_same(name, n, &b, &a);
    }
}

fn assert_same(name: &str, step: usize, a: &Simulation, b: &Simulation) {
    for k in 0..b.program.buffers.len() {
        for (x, y) in a.buffer(k).iter().zip(b.buffer(k)) {
            let rel = if x == y {
                0.0
            } else {
                (x - y).abs() / x.abs().max(y.abs())
            };
            assert!(
                rel <= 1e-12,
                "{name}: buffer `{}` differs at step {step}: {x} vs {y}",
                b.program.buffers[k].name
            );
        }
    }
}

#[test]
fn every_bundled_model_has_a_macro_invocation() {
    let mut files: Vec<String> = std::fs::read_dir(models_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gle"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, BUNDLED);
}

#[test]
fn compiled_models_match_the_interpreter() {
    for name in BUNDLED {
        compare(name, 1000, 4);
    }
}

#[test]
fn model_new_runs_the_declared_batch_like_the_interpreter() {
    let mut net = gle_lagline::Model::new().unwrap();
    let mut interp = simulation("gle_lagline", 100, false);
    assert_eq!(net.simulation().batch(), 100);
    for n in 0..200 {
        net.step().unwrap();
        interp.step().unwrap();
        interp.optimizer_step().unwrap();
        assert_same("gle_lagline", n, net.simulation(), &interp);
    }
}

#[test]
fn state_and_params_name_the_buffers() {
    let mut net = gle_lagline::Model::new().unwrap();
    net.run(10).unwrap();
    let sim = net.simulation();
    let id = sim.buffer_id("x_h.W").unwrap();
    assert_eq!(net.params().x_h_w, sim.buffer(id));
    assert_eq!(net.state().y_u, sim.buffer(sim.buffer_id("y.u").unwrap()));
    assert_eq!(net.x_h_w(), sim.buffer(id));
}

mod inline {
    gle_macros::model! {
        model inline_neuron
        neuron Leaky {
            param tau_m = 2.0
            state u
            rate r = tanh(u)
            mismatch e = D[tau_m] u - input
        }
        input x[2] = sin(t)
        population h[2] : Leaky
        connect x -> h : dense(init: 0.5) fixed
        run {
            dt 0.1
            duration 1
        }
    }
}

#[test]
fn inline_form_runs() {
    let mut net = inline::inline_neuron::Model::new().unwrap();
    net.run(10).unwrap();
    assert!(net.state().h_u.iter().all(|u| u.is_finite() && *u != 0.0));
}

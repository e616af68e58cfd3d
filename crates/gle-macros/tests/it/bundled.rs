//! Every bundled model through `model!`, step by step against the reference interpreter.

use gle_runtime::Simulation;
use std::path::Path;

/// Declares each model through the macro and lists `(file stem, constructor)`.
macro_rules! bundled {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(gle_macros::model!($path);)*
        const BUNDLED: &[&str] = &[$(stringify!($name)),*];
        /// Runs `steps` training steps of the compiled model `name` and of the interpreter.
        fn compare_named(name: &str, steps: usize) {
            $(if name == stringify!($name) {
                let mut compiled = $name::Model::new().unwrap();
                let mut interp = interpreter(name);
                for n in 0..steps {
                    compiled.step().unwrap();
                    if !interp.model.datasets.is_empty() && interp.data_steps_left() == 0 {
                        interp.begin_data_pass(0, false);
                    }
                    interp.step().unwrap();
                    interp.optimizer_step().unwrap();
                    assert_same(name, n, compiled.simulation(), &interp);
                }
                return;
            })*
            panic!("no model! invocation for `{name}`");
        }
    };
}

bundled!(
    gle_lagline => "../../models/gle_lagline.gle",
    gle_lagline_golden => "../../models/gle_lagline_golden.gle",
    gle_lagnet => "../../models/gle_lagnet.gle",
    gle_mnist1d_15k => "../../models/gle_mnist1d_15k.gle",
    gle_single_neuron => "../../models/gle_single_neuron.gle",
    le_chain => "../../models/le_chain.gle",
    le_chain_nonprospective => "../../models/le_chain_nonprospective.gle",
    le_fourier => "../../models/le_fourier.gle",
    le_microcircuit_bars => "../../models/le_microcircuit_bars.gle",
    le_mnist1d_mlp => "../../models/le_mnist1d_mlp.gle",
    le_mnist1d_mlp_fa => "../../models/le_mnist1d_mlp_fa.gle",
);

fn models_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// The reference interpreter on the same model, seed and batch.
fn interpreter(name: &str) -> Simulation {
    let path = models_dir().join(format!("{name}.gle"));
    let text = std::fs::read_to_string(&path).unwrap();
    let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let steps = Simulation::protocol_steps(&model).unwrap();
    Simulation::new(model, program, &models_dir(), steps).unwrap()
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
        let steps = if name.contains("mnist") { 200 } else { 1000 };
        compare_named(name, steps);
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

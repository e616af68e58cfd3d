//! The JIT against the reference interpreter, step by step, on every bundled model.

use gle_runtime::Simulation;
use std::path::Path;

fn models() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gle"))
        .collect();
    v.sort();
    v
}

/// A simulation of `path` with a small batch (the dynamics do not depend on it).
pub fn simulation(path: &Path, jit: bool, batch: usize) -> Simulation {
    let text = std::fs::read_to_string(path).unwrap();
    let overrides = [("batch".to_string(), batch as f64)];
    let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let kernel = jit.then(|| gle_jit::compile(&program, batch).unwrap());
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

/// Every buffer equal within 1e-12 relative after every step of `steps` training steps.
fn compare(path: &Path, steps: usize, batch: usize) {
    let mut a = simulation(path, false, batch);
    let mut b = simulation(path, true, batch);
    for n in 0..steps {
        for s in [&mut a, &mut b] {
            if !s.model.datasets.is_empty() && s.data_steps_left() == 0 {
                s.begin_data_pass(0, false);
            }
        }
        a.step().unwrap();
        b.step().unwrap();
        a.optimizer_step().unwrap();
        b.optimizer_step().unwrap();
        for k in 0..a.program.buffers.len() {
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
}

#[test]
fn jit_matches_the_interpreter_on_every_model() {
    for path in models() {
        let steps = if path.display().to_string().contains("mnist") {
            200
        } else {
            1000
        };
        compare(&path, steps, 4);
    }
}

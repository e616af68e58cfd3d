//! Commits by exchange (`Program::swaps`) change no value anyone sees: on every bundled model, a
//! simulation whose swaps are done as copies runs bit for bit the same.

use gle_runtime::Simulation;
use std::path::Path;

/// A small-batch simulation of a bundled model; with `copies`, every swap becomes a copy.
fn simulation(path: &Path, copies: bool) -> Simulation {
    let text = std::fs::read_to_string(path).unwrap();
    // The golden replay streams recorded inputs of batch 4.
    let batch = if path.display().to_string().contains("golden") {
        4.0
    } else {
        3.0
    };
    let overrides = [("batch".to_string(), batch)];
    let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let mut program = gle_derive::compile(&model).unwrap();
    if copies {
        let swaps = std::mem::take(&mut program.swaps);
        program.commits.extend(swaps);
    }
    let steps = Simulation::protocol_steps(&model).unwrap().min(2000);
    let mut sim = Simulation::new(model, program, path.parent().unwrap(), steps).unwrap();
    if !sim.model.datasets.is_empty() {
        sim.begin_data_pass(0, false);
    }
    sim
}

#[test]
fn swapped_commits_equal_copied_ones_on_every_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gle"))
        .collect();
    paths.sort();
    let mut swapped = 0;
    for path in paths {
        let mut a = simulation(&path, false);
        let mut b = simulation(&path, true);
        // What a swap leaves in its source is never read; everything else must agree.
        let sources: Vec<usize> = a.program.swaps.iter().map(|s| s.1).collect();
        swapped += sources.len();
        let steps = if path.display().to_string().contains("mnist") {
            100
        } else {
            500
        };
        for n in 0..steps {
            // Every third block of 25 steps computes no gradients, as in a test phase.
            let learning = (n / 25) % 3 != 2;
            for s in [&mut a, &mut b] {
                if !s.model.datasets.is_empty() && s.data_steps_left() == 0 {
                    s.begin_data_pass(0, false);
                }
                s.set_learning(learning);
                s.step().unwrap();
                if learning {
                    s.optimizer_step().unwrap();
                }
            }
            for k in (0..a.program.buffers.len()).filter(|k| !sources.contains(k)) {
                let (x, y) = (a.buffer(k), b.buffer(k));
                assert!(
                    x.iter().zip(y).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{}: `{}` differs at step {n}",
                    path.display(),
                    a.program.buffers[k].name
                );
            }
        }
    }
    assert!(swapped > 100, "only {swapped} commits are swaps");
}

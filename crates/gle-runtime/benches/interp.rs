//! Steps per second of the reference interpreter on the LagLine and MNIST-1D 15k models at batch
//! 1 and 100: a training step (dynamics, errors, plasticity, optimiser) per iteration element.
//! And the time of one Adam step over the MNIST-1D 15k network's parameters (`adam/…`), the
//! optimiser every backend shares.

use criterion::{Criterion, Throughput, criterion_main};
use gle_runtime::Simulation;
use std::path::Path;
use std::time::{Duration, Instant};

fn simulation(file: &str, batch: usize) -> Simulation {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let path = models.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let overrides = [("batch".to_string(), batch as f64)];
    let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let steps = Simulation::protocol_steps(&model).unwrap().min(1_000_000);
    let mut sim = Simulation::new(model, program, &models, steps).unwrap();
    if !sim.model.datasets.is_empty() {
        sim.begin_data_pass(0, false);
    }
    sim
}

fn train_steps(c: &mut Criterion, name: &str, file: &str, batch: usize) {
    let mut sim = simulation(file, batch);
    // Precomputed input streams last for the protocol's length (capped); datasets never run out.
    let available = if sim.model.datasets.is_empty() {
        Simulation::protocol_steps(&sim.model).unwrap().min(1_000_000) as u64
    } else {
        u64::MAX
    };
    let mut group = c.benchmark_group("interpreter");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{name}/batch{batch}"), |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut start = Instant::now();
            for _ in 0..iters {
                if sim.steps() + 1 >= available {
                    // Start over (untimed) before the input streams end.
                    elapsed += start.elapsed();
                    sim = simulation(file, batch);
                    start = Instant::now();
                }
                if !sim.model.datasets.is_empty() && sim.data_steps_left() == 0 {
                    sim.begin_data_pass(0, false);
                }
                sim.step().unwrap();
                sim.optimizer_step().unwrap();
            }
            elapsed + start.elapsed()
        })
    });
    group.finish();
}

/// One Adam step over the MNIST-1D 15k network's 14.6k parameters (one thread, the gradient of
/// its first step): while Adam's bias correction `√(1 − β₂ᵗ)` still divides (`bias_corrected`,
/// steps 1–30,000) and once it has rounded to 1.0 (`corrected_to_one`, from step 37,500).
fn adam_steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("adam");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (name, first, last) in [("bias_corrected", 0, 30_000), ("corrected_to_one", 37_500, u64::MAX)] {
        let fresh = || {
            let mut sim = simulation("gle_mnist1d_15k.gle", 1);
            sim.step().unwrap();
            (0..first).for_each(|_| sim.optimizer_step().unwrap());
            sim
        };
        let (mut sim, mut taken) = (fresh(), first);
        group.bench_function(format!("mnist1d_15k/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    if taken == last {
                        // Start over (untimed) before the bias correction changes.
                        (sim, taken) = (fresh(), first);
                    }
                    let start = Instant::now();
                    sim.optimizer_step().unwrap();
                    elapsed += start.elapsed();
                    taken += 1;
                }
                elapsed
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    adam_steps(c);
    train_steps(c, "lagline", "gle_lagline.gle", 1);
    train_steps(c, "lagline", "gle_lagline.gle", 100);
    train_steps(c, "mnist1d_15k", "gle_mnist1d_15k.gle", 1);
    train_steps(c, "mnist1d_15k", "gle_mnist1d_15k.gle", 100);
}

mod group {
    #![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]
    criterion::criterion_group!(benches, super::benches);
}

criterion_main!(group::benches);

//! The JIT against the interpreter and the emitted Rust (`model!`), in the same run: training
//! steps per second of the LagLine and MNIST-1D 15k models at batch 1 and 100 and of the LE MLP
//! on MNIST-1D (hard-sigmoid layers, plain SGD) at its batch 100, MNIST-1D 15k's protocol runs
//! at batch 1 on one thread and on two, and compile time of every bundled model.

use criterion::{Criterion, Throughput, criterion_main};
use gle_runtime::{Hooks, Simulation};
use std::path::Path;
use std::time::{Duration, Instant};

gle_macros::model!("../../models/gle_lagline.gle");
gle_macros::model!("../../models/gle_mnist1d_15k.gle");
gle_macros::model!("../../models/le_mnist1d_mlp.gle");

/// Which backend runs the steps.
#[derive(Clone, Copy)]
enum Backend {
    Interpreter,
    Jit,
    EmittedRust,
}

fn models_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// The bundled model `file` checked with `batch` rows, and its step program.
fn model_at(file: &str, batch: usize) -> (gle_ir::Model, gle_derive::program::Program) {
    let path = models_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let overrides = [("batch".to_string(), batch as f64)];
    let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    (model, program)
}

fn simulation(file: &str, batch: usize, backend: Backend) -> Simulation {
    let (model, program) = model_at(file, batch);
    let kernel: Option<Box<dyn gle_runtime::StepKernel>> = match backend {
        Backend::Interpreter => None,
        Backend::Jit => {
            let sgd = gle_runtime::sgd_learnables(&model, &program);
            Some(Box::new(gle_jit::compile_absorbing(&program, batch, 1, &sgd).unwrap()))
        }
        Backend::EmittedRust if file.starts_with("gle_lagline") => Some(gle_lagline::compiled_step(batch)),
        Backend::EmittedRust if file.starts_with("le_mnist1d_mlp") => Some(le_mnist1d_mlp::compiled_step(batch)),
        Backend::EmittedRust => Some(gle_mnist1d_15k::compiled_step(batch)),
    };
    let steps = Simulation::protocol_steps(&model).unwrap().min(1_000_000);
    let mut sim = Simulation::new(model, program, &models_dir(), steps).unwrap();
    if let Some(k) = kernel {
        sim.set_kernel(k);
    }
    if !sim.model.datasets.is_empty() {
        sim.begin_data_pass(0, false);
    }
    sim
}

fn train_steps(c: &mut Criterion, name: &str, file: &str, batch: usize) {
    let mut group = c.benchmark_group(format!("train_steps/{name}/batch{batch}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Elements(1));
    for (backend, label) in [
        (Backend::Interpreter, "interpreter"),
        (Backend::Jit, "jit"),
        (Backend::EmittedRust, "emitted_rust"),
    ] {
        let mut sim = simulation(file, batch, backend);
        let available = if sim.model.datasets.is_empty() {
            Simulation::protocol_steps(&sim.model).unwrap().min(1_000_000) as u64
        } else {
            u64::MAX
        };
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut start = Instant::now();
                for _ in 0..iters {
                    if sim.steps() + 1 >= available {
                        elapsed += start.elapsed();
                        sim = simulation(file, batch, backend);
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
    }
    group.finish();
}

/// Steps per second of the protocol's runs of steps, as `glec run` takes them (the JIT loops
/// over the steps between two the protocol observes, the optimiser between them), at `batch`
/// on one thread and on a team of two (at batch 1 each thread its own layers, at larger
/// batches its batch rows; the optimiser's pieces shared).
fn protocol_runs(c: &mut Criterion, name: &str, file: &str, batch: usize) {
    let mut group = c.benchmark_group(format!("protocol_runs/{name}/batch{batch}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Elements(1));
    let (model, program) = model_at(file, batch);
    let sgd = gle_runtime::sgd_learnables(&model, &program);
    let steps = Simulation::protocol_steps(&model).unwrap();
    for threads in [1, 2] {
        let label = if threads == 1 {
            "jit_one_thread"
        } else {
            "jit_two_threads"
        };
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                // The protocol from its start, for `iters` steps (its first phase is longer).
                let kernel = gle_jit::compile_absorbing(&program, batch, threads, &sgd).unwrap();
                let mut sim = Simulation::new(model.clone(), program.clone(), &models_dir(), steps).unwrap();
                sim.set_kernel(Box::new(kernel));
                sim.set_step_limit(iters);
                let start = Instant::now();
                sim.run_protocol_with(&mut Hooks {
                    observe: &mut |_| Ok(()),
                    observe_every: 0,
                    report: &mut |_| Ok(()),
                    save: &mut |_, _| Ok(()),
                })
                .unwrap();
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn compile_times(c: &mut Criterion) {
    let mut group = c.benchmark_group("jit_compile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    let mut files: Vec<_> = std::fs::read_dir(models_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gle"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let (model, _) = gle_ir::check_source(&path.display().to_string(), &text);
        let model = model.unwrap();
        let program = gle_derive::compile(&model).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        group.bench_function(name, |b| {
            b.iter(|| gle_jit::compile(&program, model.protocol.batch).unwrap())
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    compile_times(c);
    train_steps(c, "lagline", "gle_lagline.gle", 1);
    train_steps(c, "lagline", "gle_lagline.gle", 100);
    train_steps(c, "mnist1d_15k", "gle_mnist1d_15k.gle", 1);
    protocol_runs(c, "mnist1d_15k", "gle_mnist1d_15k.gle", 1);
    train_steps(c, "mnist1d_15k", "gle_mnist1d_15k.gle", 100);
    protocol_runs(c, "mnist1d_15k", "gle_mnist1d_15k.gle", 100);
    train_steps(c, "le_mnist1d_mlp", "le_mnist1d_mlp.gle", 100);
}

mod group {
    #![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]
    criterion::criterion_group!(benches, super::benches);
}

criterion_main!(group::benches);

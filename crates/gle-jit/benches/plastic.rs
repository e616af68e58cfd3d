//! A 1000 × 1000 dense plastic layer, one thread, f64: prospective rate tanh(u + τʳ·u̇), delta
//! rule Ẇ = η·e·rᵀ, τᵐ = 10, τʳ = 5, dt = 0.1, η = 1e-3. glec's JIT and interpreter against a
//! hand-written fused Rust loop of the same update, in the same run; throughput in synapse
//! updates (one per weight per step).

use criterion::{Criterion, Throughput, criterion_main};
use gle_runtime::Simulation;
use std::hint::black_box;
use std::time::Duration;

const N: usize = 1000;

/// The layer (shared with the Rust-backend benchmark in gle-macros).
const MODEL: &str = include_str!("plastic_layer.gle");

gle_macros::model!("benches/plastic_layer.gle");

/// Which glec backend runs the steps.
#[derive(Clone, Copy)]
enum Backend {
    Interpreter,
    Jit,
    EmittedRust,
}

fn simulation(backend: Backend) -> Simulation {
    let (model, diags) = gle_ir::check_source("plastic.gle", MODEL);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let kernel: Option<Box<dyn gle_runtime::StepKernel>> = match backend {
        Backend::Interpreter => None,
        Backend::Jit => {
            let sgd = gle_runtime::sgd_learnables(&model, &program);
            let step = gle_jit::compile_absorbing(&program, 1, 1, &sgd).unwrap();
            assert_eq!(
                gle_runtime::StepKernel::absorbed_updates(&step).len(),
                1,
                "the layer's update is absorbed"
            );
            Some(Box::new(step))
        }
        Backend::EmittedRust => Some(plastic_layer::compiled_step(1)),
    };
    let mut sim = Simulation::new(model, program, std::path::Path::new("."), 2000).unwrap();
    if let Some(k) = kernel {
        sim.set_kernel(k);
    }
    sim
}

/// The same layer written by hand: one pass over each row of W computes the input, the
/// neuron update, the error and the weight update (the row stays in L1 between the dot product
/// and the update).
struct Fused {
    w: Vec<f64>,
    u: Vec<f64>,
    x: Vec<f64>,
    t: f64,
}

impl Fused {
    fn new() -> Self {
        let mut seed = 1u64;
        let w = (0..N * N)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.06
            })
            .collect();
        Fused {
            w,
            u: vec![0.0; N],
            x: vec![0.0; N],
            t: 0.0,
        }
    }

    fn step(&mut self) {
        let (dt, tau_m, tau_r, lr) = (0.1, 10.0, 5.0, 1e-3 * 0.1);
        for (j, x) in self.x.iter_mut().enumerate() {
            *x = (0.01 * (j + 1) as f64 * self.t).sin();
        }
        let target = 0.5 * (0.02 * self.t).cos();
        for i in 0..N {
            let row = &mut self.w[i * N..(i + 1) * N];
            let input: f64 = row.iter().zip(&self.x).map(|(w, x)| w * x).sum();
            let udot = (input - self.u[i]) / tau_m;
            let r = (self.u[i] + tau_r * udot).tanh();
            self.u[i] += dt * udot;
            let e = (1.0 - r * r) * (target - r);
            let g = lr * e;
            for (w, x) in row.iter_mut().zip(&self.x) {
                *w += g * x;
            }
        }
        self.t += dt;
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("plastic_layer_1000x1000");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Elements((N * N) as u64));
    let mut fused = Fused::new();
    group.bench_function("hand_written_fused_rust", |b| {
        b.iter(|| {
            fused.step();
            black_box(&fused.w);
        })
    });
    for (backend, label) in [
        (Backend::Jit, "glec_jit"),
        (Backend::EmittedRust, "glec_emitted_rust"),
        (Backend::Interpreter, "glec_interpreter"),
    ] {
        let mut sim = simulation(backend);
        group.bench_function(label, |b| {
            b.iter(|| {
                if sim.steps() + 1 >= 2000 {
                    sim = simulation(backend);
                }
                sim.step().unwrap();
                sim.optimizer_step().unwrap();
            })
        });
    }
    group.finish();
}

mod group {
    #![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]
    criterion::criterion_group!(benches, super::benches);
}

criterion_main!(group::benches);

//! A 1000 × 1000 dense plastic layer, one thread, f64: prospective rate tanh(u + τʳ·u̇), delta
//! rule Ẇ = η·e·rᵀ, τᵐ = 10, τʳ = 5, dt = 0.1, η = 1e-3. glec's JIT and interpreter against a
//! hand-written fused Rust loop of the same update, in the same run; throughput in synapse
//! updates (one per weight per step).

use criterion::{Criterion, Throughput, criterion_main};
use gle_runtime::Simulation;
use std::hint::black_box;
use std::time::Duration;

const N: usize = 1000;

const MODEL: &str = "neuron Layer {
    param tau_m = 10
    param tau_r = 5
    param gamma = 0
    state u
    let uhat = D[tau_r] u
    rate r = tanh(uhat)
    mismatch e = D[tau_m] u - input
}
const beta = 1
input x[1000] = sin(0.01 * linspace(1, 1000, 1000) * t)
input target[1000] = 0.5 * cos(0.02 * t)
population y[1000] : Layer
connect x -> y : dense(init: uniform(-0.03, 0.03)) learn
energy E = mismatch(y) + beta * mse(y.r, target)
learn {
    errors instantaneous
    optimizer sgd(lr: 1e-3 * 0.1)
}
run {
    dt 0.1
    steps 100000
}
";

fn simulation(jit: bool) -> Simulation {
    let (model, diags) = gle_ir::check_source("plastic.gle", MODEL);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let kernel = jit.then(|| gle_jit::compile(&program, 1).unwrap());
    let mut sim = Simulation::new(model, program, std::path::Path::new("."), 2000).unwrap();
    if let Some(k) = kernel {
        sim.set_kernel(Box::new(k));
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
    for jit in [true, false] {
        let mut sim = simulation(jit);
        group.bench_function(if jit { "glec_jit" } else { "glec_interpreter" }, |b| {
            b.iter(|| {
                if sim.steps() + 1 >= 2000 {
                    sim = simulation(jit);
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

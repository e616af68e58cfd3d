//! The plain-backprop reference of the LE classification experiment (LE paper Fig. 2b on
//! MNIST-1D; issue 7): the static MLP of `models/le_mnist1d_mlp.gle` — same data, same initial
//! weights (taken from the model's own simulation), same batches of 100, same per-layer rates —
//! trained by textbook backprop and SGD, so the LE network's accuracy has something to be
//! compared with.
//!
//! The learning rates are LE's per presentation: n_updates steps of SGD at rate lr·factor on the
//! error β·(y − out) change W by n_updates·lr·β·factor·⟨δ rᵀ⟩, i.e. 1.6·factor (factors 1, 0.2,
//! 0.1 per layer).

use crate::root;
use gle_runtime::Simulation;

/// Hard sigmoid, the hidden activation of the model.
fn hard_sigmoid(a: f64) -> f64 {
    a.clamp(0.0, 1.0)
}

/// One dense layer `W (out × in)`, `b (out)`.
struct Layer {
    w: Vec<f64>,
    b: Vec<f64>,
    inputs: usize,
}

impl Layer {
    fn outputs(&self) -> usize {
        self.b.len()
    }

    fn forward(&self, x: &[f64]) -> Vec<f64> {
        (0..self.outputs())
            .map(|i| {
                let row = &self.w[i * self.inputs..(i + 1) * self.inputs];
                self.b[i] + row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>()
            })
            .collect()
    }
}

/// The MLP 40 → 100 → 100 → 10 of the model, with its initial parameters.
struct Mlp {
    layers: Vec<Layer>,
    rates: [f64; 3],
}

/// A split of MNIST-1D: rows of 40 values and their labels.
struct Split {
    x: Vec<f64>,
    y: Vec<usize>,
}

/// The model's data and initial network (drawn with run seed `seed`), read through glec itself.
fn load(seed: u64) -> (Mlp, Split, Split) {
    let path = root().join("models/le_mnist1d_mlp.gle");
    let text = std::fs::read_to_string(&path).unwrap();
    let overrides = [("seed".to_string(), seed as f64)];
    let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let sim = Simulation::new(model, program, &root().join("models"), 1).unwrap();
    let param = |name: &str| sim.buffer(sim.buffer_id(name).unwrap()).to_vec();
    let layer = |name: &str, inputs: usize| Layer {
        w: param(&format!("{name}.W")),
        b: param(&format!("{name}.b")),
        inputs,
    };
    let mlp = Mlp {
        layers: vec![layer("x_h1", 40), layer("h1_h2", 100), layer("h2_out", 100)],
        rates: [1.6, 1.6 * 0.2, 1.6 * 0.1],
    };
    let data = sim.dataset(0);
    let split = |fields: &[gle_runtime::data::FieldData]| Split {
        x: fields[0].data.clone(),
        y: fields[1].data.iter().map(|v| *v as usize).collect(),
    };
    let test = split(data.test.as_ref().unwrap());
    (mlp, split(&data.train), test)
}

impl Mlp {
    /// Activations of every layer (input first; hidden ones after φ, the output linear).
    fn activations(&self, x: &[f64]) -> Vec<Vec<f64>> {
        let mut acts = vec![x.to_vec()];
        for (k, layer) in self.layers.iter().enumerate() {
            let a = layer.forward(acts.last().unwrap());
            let hidden = k + 1 < self.layers.len();
            acts.push(if hidden {
                a.into_iter().map(hard_sigmoid).collect()
            } else {
                a
            });
        }
        acts
    }

    /// One SGD step on the batch mean of the squared-error gradient.
    fn train_batch(&mut self, xs: &[&[f64]], ys: &[usize]) {
        let mut grads: Vec<(Vec<f64>, Vec<f64>)> = self
            .layers
            .iter()
            .map(|l| (vec![0.0; l.w.len()], vec![0.0; l.b.len()]))
            .collect();
        for (x, &y) in xs.iter().zip(ys) {
            let acts = self.activations(x);
            let out = acts.last().unwrap();
            // δ_L = y − out (one-hot y); δ_l = φ'(a_l) ⊙ W_{l+1}ᵀ δ_{l+1}.
            let mut delta: Vec<f64> = (0..out.len()).map(|i| f64::from(u8::from(i == y)) - out[i]).collect();
            for k in (0..self.layers.len()).rev() {
                let layer = &self.layers[k];
                let input = &acts[k];
                let (gw, gb) = &mut grads[k];
                for (i, d) in delta.iter().enumerate() {
                    gb[i] += d;
                    let row = &mut gw[i * layer.inputs..(i + 1) * layer.inputs];
                    for (g, x) in row.iter_mut().zip(input) {
                        *g += d * x;
                    }
                }
                if k > 0 {
                    delta = (0..layer.inputs)
                        .map(|j| {
                            let back: f64 = (0..layer.outputs())
                                .map(|i| layer.w[i * layer.inputs + j] * delta[i])
                                .sum();
                            // φ' of the hard sigmoid: 1 inside (0, 1), else 0.
                            let inside = input[j] > 0.0 && input[j] < 1.0;
                            if inside { back } else { 0.0 }
                        })
                        .collect();
                }
            }
        }
        let n = xs.len() as f64;
        for ((layer, (gw, gb)), rate) in self.layers.iter_mut().zip(&grads).zip(self.rates) {
            for (w, g) in layer.w.iter_mut().zip(gw) {
                *w += rate * g / n;
            }
            for (b, g) in layer.b.iter_mut().zip(gb) {
                *b += rate * g / n;
            }
        }
    }

    fn accuracy(&self, split: &Split) -> f64 {
        let right = split
            .y
            .iter()
            .enumerate()
            .filter(|(k, y)| {
                let out = self.activations(&split.x[k * 40..(k + 1) * 40]).pop().unwrap();
                let best = (0..out.len()).max_by(|a, b| out[*a].total_cmp(&out[*b])).unwrap();
                best == **y
            })
            .count();
        right as f64 / split.y.len() as f64
    }
}

/// Trains the initial network of run seed `seed` for `epochs` (the order shuffled per epoch by
/// a simple LCG started at the seed; batch 100) and returns the test accuracy after each epoch.
pub fn backprop_test_accuracy(epochs: usize, seed: u64) -> Vec<f64> {
    let (mut mlp, train, test) = load(seed);
    let n = train.y.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut state: u64 = seed;
    let mut curve = Vec::new();
    for _ in 0..epochs {
        for k in (1..n).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(k, (state >> 33) as usize % (k + 1));
        }
        for batch in order.chunks(100) {
            let xs: Vec<&[f64]> = batch.iter().map(|&r| &train.x[r * 40..(r + 1) * 40]).collect();
            let ys: Vec<usize> = batch.iter().map(|&r| train.y[r]).collect();
            mlp.train_batch(&xs, &ys);
        }
        curve.push(mlp.accuracy(&test));
    }
    curve
}

/// The full reference for EXPERIMENTS.md (50 epochs, as the LE model, run seeds 42 — the
/// model's own —, 1 and 2):
/// `cargo test --release -p glec --test it backprop_reference_full -- --ignored --nocapture`.
#[test]
#[ignore = "the full 50-epoch reference (about a minute per seed in release); run it by name"]
fn backprop_reference_full() {
    for seed in [42, 1, 2] {
        let curve = backprop_test_accuracy(50, seed);
        for (epoch, acc) in curve.iter().enumerate() {
            println!(
                "seed {seed:>2}  epoch {:>2}  test accuracy {:.2} %",
                epoch + 1,
                100.0 * acc
            );
        }
        let last10 = curve[40..].iter().sum::<f64>() / 10.0;
        println!("seed {seed:>2}  mean of epochs 41-50 {:.2} %", 100.0 * last10);
    }
}

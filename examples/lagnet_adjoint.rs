//! GLE errors against the exact offline adjoint on the LagNet (GLE paper Fig. 6; test-facts A7
//! and F2): runs `models/gle_lagnet.gle` with its student frozen at the initial weights, records
//! the online GLE errors e of the first hidden layer, integrates the exact adjoint λ backwards
//! over the whole recorded trajectory (math §9.10), and compares both at the input's three
//! frequencies: the phase of e should equal that of λ, and |e|/|λ| should be the product of
//! (1 + ω²τᵐ²)/(1 + ω²τʳ²) along each neuron's path (1 for the fast neuron, the square of the
//! A7 ratio for the slow one, whose path runs through the slow neuron of the second layer).
//! Then it trains the figure's adjoint ("AM") student: after the warm-up, every 300 steps the
//! exact λ of the window just run moves the input weights by 7e-2 · ∫ λ x dt.
//!
//! ```text
//! cargo run --release -p gle-runtime --example lagnet_adjoint
//! ```

use gle_runtime::Simulation;
use std::path::Path;

const OMEGAS: [f64; 3] = [0.49, 1.07, 1.98];
const STEPS: usize = 100_100;
/// Samples before this time are left out of the spectra (transients of both e and λ).
const SKIP: f64 = 100.0;

/// One comparison: a first-hidden-layer neuron at one frequency.
pub struct Row {
    /// The neuron's index in the first hidden layer.
    pub neuron: usize,
    /// Whether it is the slow (retrospective, τʳ < τᵐ) neuron.
    pub slow: bool,
    /// Angular frequency.
    pub omega: f64,
    /// arg e − arg λ, wrapped to (−π, π].
    pub phase_difference: f64,
    /// |e| / |λ|.
    pub gain_ratio: f64,
    /// The product of (1 + ω²τᵐ²)/(1 + ω²τʳ²) along the neuron's path.
    pub predicted_ratio: f64,
}

fn main() -> Result<(), String> {
    let rows = compare(STEPS)?;
    println!("dt = 0.01, {STEPS} steps, spectra over t ≥ {SKIP}; student frozen at its initial weights\n");
    println!("| hid_1 neuron | ω | arg e − arg λ (rad) | ω·dt | \\|e\\|/\\|λ\\| | predicted |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let kind = if r.slow { "slow" } else { "fast" };
        println!(
            "| {} ({kind}) | {} | {:+.4} | {:.4} | {:.4} | {:.4} |",
            r.neuron,
            r.omega,
            r.phase_difference,
            r.omega * 0.01,
            r.gain_ratio,
            r.predicted_ratio
        );
    }
    // The adjoint student: λ over every window of 300 steps after the 8000-step warm-up, lr 7e-2.
    let am = adjoint_student(STEPS, 8000, 300, 7e-2)?;
    println!("\nadjoint (AM) student, W₁ every 30,000 steps after the warm-up (teacher: −0.5, 1):\n");
    println!("| step | W₁[0] (fast) | W₁[1] (slow) |");
    println!("| --- | --- | --- |");
    let last = am.last().map_or(0, |l| l.0);
    for (n, w) in am.iter().filter(|(n, _)| (n - 8000) % 30_000 == 0 || *n == last) {
        println!("| {n} | {:+.4} | {:+.4} |", w[0], w[1]);
    }
    Ok(())
}

/// The LagNet student as a simulation, with what the adjoint needs of it.
struct LagNet {
    sim: Simulation,
    dt: f64,
    /// Buffers read every step: x, h1.e, h1.slope, h2.slope, out.slope, out.r, tout.r.
    ids: [usize; 7],
    /// The learned input weights x → h1.
    w1: usize,
    /// The fixed weights h1 → h2 (diagonal) and h2 → out.
    d12: Vec<f64>,
    w23: Vec<f64>,
    /// τᵐ and τʳ of h1 and h2.
    tau_m: [Vec<f64>; 2],
    tau_r: [Vec<f64>; 2],
}

/// One step of the forward trajectory.
struct Sample {
    x: f64,
    e1: Vec<f64>,
    slope1: Vec<f64>,
    slope2: Vec<f64>,
    /// The output's instantaneous error ε = φ'·β(target − r) (linear output, β = 1).
    eps: f64,
}

impl LagNet {
    /// The LagNet of `models/{file}`.
    fn new(file: &str, steps: usize) -> Result<Self, String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models").join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
        let model = model.ok_or_else(|| format!("{diags:?}"))?;
        let program = gle_derive::compile(&model).map_err(|e| e.message)?;
        let dt = model.protocol.dt;
        let sim = Simulation::new(model, program, Path::new("."), steps).map_err(|e| e.message)?;
        let id = |name: &str| sim.buffer_id(name).ok_or(format!("no buffer `{name}`"));
        let ids = [
            id("x")?,
            id("h1.e")?,
            id("h1.slope")?,
            id("h2.slope")?,
            id("out.slope")?,
            id("out.r")?,
            id("tout.r")?,
        ];
        let param = |name: &str| -> Result<Vec<f64>, String> { Ok(sim.buffer(id(name)?).to_vec()) };
        Ok(LagNet {
            dt,
            ids,
            w1: id("x_h1.W")?,
            d12: param("h1_h2.W")?,
            w23: param("h2_out.W")?,
            tau_m: [param("h1.tau_m")?, param("h2.tau_m")?],
            tau_r: [param("h1.tau_r")?, param("h2.tau_r")?],
            sim,
        })
    }

    /// One step without learning; what the adjoint needs of it: the values the step reads (φ'
    /// and the output error from the values committed before it, the input of this step) and
    /// the error e it computes.
    fn step(&mut self) -> Result<Sample, String> {
        let b = |sim: &Simulation, k: usize| sim.buffer(self.ids[k]).to_vec();
        let (slope1, slope2) = (b(&self.sim, 2), b(&self.sim, 3));
        let eps = b(&self.sim, 4)[0] * (b(&self.sim, 6)[0] - b(&self.sim, 5)[0]);
        self.sim.step().map_err(|e| e.message)?;
        Ok(Sample {
            x: b(&self.sim, 0)[0],
            e1: b(&self.sim, 1),
            slope1,
            slope2,
            eps,
        })
    }

    /// The exact adjoint λ of each first-layer neuron over `samples`, integrated backwards from
    /// λ = 0 after the last: λ(t) = e^{−dt/τᵐ} λ(t+dt) + dt/τᵐ · α̃(t+dt), with
    /// α̃(t+dt) = α(t+dt) − τʳ/dt · (α(t+dt) − α(t)) and α the error arriving from above.
    fn adjoint(&self, samples: &[Sample]) -> [Vec<f64>; 2] {
        let dt = self.dt;
        let back = |alpha: &dyn Fn(usize) -> f64, tm: f64, tr: f64| -> Vec<f64> {
            let mut lam = vec![0.0; samples.len()];
            for n in (0..samples.len().saturating_sub(1)).rev() {
                let (a1, a0) = (alpha(n + 1), alpha(n));
                let tilde = a1 - tr / dt * (a1 - a0);
                lam[n] = (-dt / tm).exp() * lam[n + 1] + dt / tm * tilde;
            }
            lam
        };
        // The output is instantaneous (τᵐ = τʳ = 1).
        let lam3 = back(&|n| samples[n].eps, 1.0, 1.0);
        let first_layer = |k: usize| {
            let lam2 = back(
                &|n| samples[n].slope2[k] * self.w23[k] * lam3[n],
                self.tau_m[1][k],
                self.tau_r[1][k],
            );
            back(
                &|n| samples[n].slope1[k] * self.d12[k] * lam2[n],
                self.tau_m[0][k],
                self.tau_r[0][k],
            )
        };
        [first_layer(0), first_layer(1)]
    }
}

/// Runs the LagNet for `steps` steps with its student frozen and compares e with λ.
pub fn compare(steps: usize) -> Result<Vec<Row>, String> {
    let mut net = LagNet::new("gle_lagnet.gle", steps)?;
    let samples = (0..steps).map(|_| net.step()).collect::<Result<Vec<_>, _>>()?;
    let lam = net.adjoint(&samples);
    let (dt, tau_m, tau_r) = (net.dt, &net.tau_m, &net.tau_r);
    let mut rows = Vec::new();
    for (k, lam1) in lam.iter().enumerate() {
        let e: Vec<f64> = samples.iter().map(|s| s.e1[k]).collect();
        for omega in OMEGAS {
            let (fe, fl) = (fourier(&e, omega, dt), fourier(lam1, omega, dt));
            let mut dphase = (fe.1.atan2(fe.0) - fl.1.atan2(fl.0)) % std::f64::consts::TAU;
            if dphase > std::f64::consts::PI {
                dphase -= std::f64::consts::TAU;
            } else if dphase <= -std::f64::consts::PI {
                dphase += std::f64::consts::TAU;
            }
            rows.push(Row {
                neuron: k,
                slow: tau_r[0][k] < tau_m[0][k],
                omega,
                phase_difference: dphase,
                gain_ratio: fe.0.hypot(fe.1) / fl.0.hypot(fl.1),
                predicted_ratio: [0, 1]
                    .iter()
                    .map(|&l| (1.0 + (omega * tau_m[l][k]).powi(2)) / (1.0 + (omega * tau_r[l][k]).powi(2)))
                    .product(),
            });
        }
    }
    Ok(rows)
}

/// The adjoint ("AM") student of the figure (`models/gle_lagnet_adjoint.gle`: γ = 0, so the
/// forward pass is unperturbed; its own protocol is not used): from step `start` on, every
/// `window` steps the exact λ over the window just run updates the input weights,
/// W₁ += lr · Σ λ₁ x dt (plain steps of lr). Returns W₁ after every window.
pub fn adjoint_student(steps: usize, start: usize, window: usize, lr: f64) -> Result<Vec<(usize, [f64; 2])>, String> {
    let mut net = LagNet::new("gle_lagnet_adjoint.gle", steps)?;
    let mut trajectory = Vec::new();
    let mut samples = Vec::with_capacity(window);
    for n in 1..=steps {
        let s = net.step()?;
        if n > start {
            samples.push(s);
        }
        if samples.len() == window {
            let lam = net.adjoint(&samples);
            let mut w = net.sim.buffer(net.w1).to_vec();
            for (k, wk) in w.iter_mut().enumerate() {
                *wk += lr * samples.iter().zip(&lam[k]).map(|(s, l)| l * s.x * net.dt).sum::<f64>();
            }
            net.sim.set_buffer(net.w1, &w);
            trajectory.push((n, [w[0], w[1]]));
            samples.clear();
        }
    }
    Ok(trajectory)
}

/// The Fourier coefficient (re, im) of `s` at angular frequency `omega` over t ≥ [`SKIP`].
fn fourier(s: &[f64], omega: f64, dt: f64) -> (f64, f64) {
    let first = (SKIP / dt) as usize;
    s.iter().enumerate().skip(first).fold((0.0, 0.0), |(re, im), (n, v)| {
        let t = (n + 1) as f64 * dt;
        (re + v * (omega * t).cos() * dt, im - v * (omega * t).sin() * dt)
    })
}

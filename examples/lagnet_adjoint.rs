//! GLE errors against the exact offline adjoint on the LagNet (GLE paper Fig. 6; test-facts A7
//! and F2): runs `models/gle_lagnet.gle` with its student frozen at the initial weights, records
//! the online GLE errors e of the first hidden layer, integrates the exact adjoint λ backwards
//! over the whole recorded trajectory (math §9.10), and compares both at the input's three
//! frequencies: the phase of e should equal that of λ, and |e|/|λ| should be the product of
//! (1 + ω²τᵐ²)/(1 + ω²τʳ²) along each neuron's path (1 for the fast neuron, the square of the
//! A7 ratio for the slow one, whose path runs through the slow neuron of the second layer).
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
    Ok(())
}

/// Runs the LagNet for `steps` steps with its student frozen and compares e with λ.
pub fn compare(steps: usize) -> Result<Vec<Row>, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gle_lagnet.gle");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
    let model = model.ok_or_else(|| format!("{diags:?}"))?;
    let program = gle_derive::compile(&model).map_err(|e| e.message)?;
    let dt = model.protocol.dt;
    let mut sim = Simulation::new(model, program, Path::new("."), steps).map_err(|e| e.message)?;
    let id = |name: &str| sim.buffer_id(name).ok_or(format!("no buffer `{name}`"));
    let ids = [
        id("h1.e")?,
        id("h1.slope")?,
        id("h2.slope")?,
        id("out.slope")?,
        id("out.r")?,
        id("tout.r")?,
    ];
    let param = |name: &str| -> Result<Vec<f64>, String> { Ok(sim.buffer(id(name)?).to_vec()) };
    let (d12, w23) = (param("h1_h2.W")?, param("h2_out.W")?);
    let tau_m = [param("h1.tau_m")?, param("h2.tau_m")?];
    let tau_r = [param("h1.tau_r")?, param("h2.tau_r")?];
    let beta = 1.0;
    // The forward trajectory, one row per step (learning off: no optimiser step is applied).
    let mut e1 = Vec::with_capacity(steps);
    let mut slope1 = Vec::with_capacity(steps);
    let mut slope2 = Vec::with_capacity(steps);
    let mut eps = Vec::with_capacity(steps);
    for _ in 0..steps {
        sim.step().map_err(|e| e.message)?;
        let b = |k: usize| sim.buffer(ids[k]).to_vec();
        e1.push(b(0));
        slope1.push(b(1));
        slope2.push(b(2));
        // The output's instantaneous error ε = φ'·β(target − r) (linear output, φ' = 1).
        eps.push(b(3)[0] * beta * (b(5)[0] - b(4)[0]));
    }
    // λ backwards from the end, λ = 0 there: λ(t) = e^{−dt/τᵐ} λ(t+dt) + dt/τᵐ · α̃(t+dt), with
    // α̃(t+dt) = α(t+dt) − τʳ/dt · (α(t+dt) − α(t)), α the error arriving from above.
    let back = |alpha: &dyn Fn(usize) -> f64, tm: f64, tr: f64| -> Vec<f64> {
        let mut lam = vec![0.0; steps];
        for n in (0..steps - 1).rev() {
            let (a1, a0) = (alpha(n + 1), alpha(n));
            let tilde = a1 - tr / dt * (a1 - a0);
            lam[n] = (-dt / tm).exp() * lam[n + 1] + dt / tm * tilde;
        }
        lam
    };
    // The output is instantaneous (τᵐ = τʳ = 1).
    let lam3 = back(&|n| eps[n], 1.0, 1.0);
    let mut rows = Vec::new();
    for k in 0..2 {
        let lam2 = back(&|n| slope2[n][k] * w23[k] * lam3[n], tau_m[1][k], tau_r[1][k]);
        let lam1 = back(&|n| slope1[n][k] * d12[k] * lam2[n], tau_m[0][k], tau_r[0][k]);
        let e: Vec<f64> = e1.iter().map(|row| row[k]).collect();
        for omega in OMEGAS {
            let (fe, fl) = (fourier(&e, omega, dt), fourier(&lam1, omega, dt));
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

/// The Fourier coefficient (re, im) of `s` at angular frequency `omega` over t ≥ [`SKIP`].
fn fourier(s: &[f64], omega: f64, dt: f64) -> (f64, f64) {
    let first = (SKIP / dt) as usize;
    s.iter().enumerate().skip(first).fold((0.0, 0.0), |(re, im), (n, v)| {
        let t = (n + 1) as f64 * dt;
        (re + v * (omega * t).cos() * dt, im - v * (omega * t).sin() * dt)
    })
}

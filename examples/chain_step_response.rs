//! Step responses of the bundled ten-layer chains (LE paper Fig. 1; test-facts C2 and D1): for
//! each depth L = 1…10, the times at which layer L reaches 50, 90 and 99 % of a unit step, for
//! the LE chain (prospective rates) and the non-prospective chain (r = u), against the
//! continuous Erlang law of L leaky layers.
//!
//! ```text
//! cargo run --release -p gle-runtime --example chain_step_response [-- DT]
//! ```
//!
//! DT (ms, default the models' 0.01) shows the Euler discretisation error of the lagging chain
//! shrink with dt/τ.

use gle_runtime::Simulation;
use std::path::Path;

const LEVELS: [f64; 3] = [0.5, 0.9, 0.99];
const DEPTH: usize = 10;
const TAU: f64 = 10.0;
const ONSET: f64 = 1.0;

fn main() -> Result<(), String> {
    let dt: f64 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|_| format!("DT must be a number of ms, not `{a}`"))?,
        None => 0.01,
    };
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let le = crossings(&models.join("le_chain.gle"), dt)?;
    let lagging = crossings(&models.join("le_chain_nonprospective.gle"), dt)?;
    println!("dt = {dt} ms, τ = {TAU} ms, unit step at t = {ONSET} ms; times after the step\n");
    println!(
        "| L | LE t50, t90, t99 (steps) | Erlang t50 / t90 / t99 (τ) | non-prospective (τ) | largest deviation (τ) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for l in 1..=DEPTH {
        let steps: Vec<String> = le[l - 1].iter().map(|t| format!("{:.0}", t / dt)).collect();
        let erlang: Vec<f64> = LEVELS.iter().map(|&p| erlang_quantile(l, p)).collect();
        // Layer L also waits one schedule step per layer above the first.
        let sim: Vec<f64> = lagging[l - 1].iter().map(|t| (t - (l - 1) as f64 * dt) / TAU).collect();
        let worst = sim.iter().zip(&erlang).map(|(s, e)| (s - e).abs()).fold(0.0, f64::max);
        let show = |v: &[f64]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(" / ");
        println!(
            "| {l} | {} | {} | {} | {worst:.1e} |",
            steps.join(", "),
            show(&erlang),
            show(&sim)
        );
    }
    Ok(())
}

/// For each layer, the times after the step's onset at which its rate first reaches each level
/// (interpolated linearly between the two steps around the crossing, unless the rate jumps
/// there from 0).
fn crossings(path: &Path, dt: f64) -> Result<Vec<[f64; 3]>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let overrides = [("dt".to_string(), dt)];
    let (model, diags) = gle_ir::check_source_with(&path.display().to_string(), &text, &overrides);
    let model = model.ok_or_else(|| format!("{}: {diags:?}", path.display()))?;
    let program = gle_derive::compile(&model).map_err(|e| e.message)?;
    let steps = ((ONSET + 2.2 * DEPTH as f64 * TAU) / dt).ceil() as usize;
    let mut sim = Simulation::new(model, program, Path::new("."), steps).map_err(|e| e.message)?;
    let rates: Vec<usize> = (1..=DEPTH)
        .map(|l| sim.buffer_id(&format!("l{l}.r")).ok_or(format!("no layer l{l}")))
        .collect::<Result<_, _>>()?;
    let mut found = vec![[f64::NAN; 3]; DEPTH];
    let mut previous = [0.0; DEPTH];
    let mut input_on = None;
    for n in 1..=steps {
        sim.step().map_err(|e| e.message)?;
        let x = sim.buffer(sim.buffer_id("x").ok_or("no input x")?)[0];
        if input_on.is_none() && x > 0.5 {
            input_on = Some(n);
        }
        for (l, &id) in rates.iter().enumerate() {
            let r = sim.buffer(id)[0];
            for (q, level) in LEVELS.iter().enumerate() {
                if found[l][q].is_nan() && r >= *level {
                    let on = input_on.unwrap_or(n) as f64;
                    // Interpolated for the smooth lagging response; whole steps for a jump.
                    let frac = if previous[l] > 0.0 {
                        (level - previous[l]) / (r - previous[l]) - 1.0
                    } else {
                        0.0
                    };
                    found[l][q] = (n as f64 + frac - on) * dt;
                }
            }
            previous[l] = r;
        }
    }
    Ok(found)
}

/// The time (in τ) at which the Erlang law of `l` unit-τ stages reaches `p`, by bisection on
/// `1 − e^{−t} Σ_{k<l} t^k/k!`.
fn erlang_quantile(l: usize, p: f64) -> f64 {
    let cdf = |t: f64| {
        let (mut term, mut sum) = (1.0, 0.0);
        for k in 0..l {
            if k > 0 {
                term *= t / k as f64;
            }
            sum += term;
        }
        1.0 - (-t).exp() * sum
    };
    let (mut lo, mut hi) = (0.0, 100.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) < p { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

//! `tests/golden/lagline`: LagLine trained by the authors' own implementation (float64). glec
//! runs the same protocol from `models/gle_lagline_golden.gle` and must match the student and
//! teacher outputs, weights and τᵐ to ≤ 1e-9 relative over all 20,000 steps.

use gle_runtime::{Simulation, npy};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden(mode: &str, name: &str) -> npy::Array {
    npy::read(
        &root()
            .join("tests/golden/lagline")
            .join(mode)
            .join(format!("{name}.npy")),
    )
    .unwrap()
}

/// Builds the golden model, switched to instantaneous errors for the "bp" run.
fn simulation(instantaneous: bool) -> Simulation {
    let path = root().join("models/gle_lagline_golden.gle");
    let mut text = std::fs::read_to_string(&path).unwrap();
    if instantaneous {
        text = text.replace("errors prospective", "errors instantaneous");
    }
    let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let steps = Simulation::protocol_steps(&model).unwrap();
    assert_eq!(steps, 20_000);
    Simulation::new(model, program, &root().join("models"), steps).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

fn check(mode: &str, instantaneous: bool) {
    let mut sim = simulation(instantaneous);
    let student = golden(mode, "student_out");
    let teacher = golden(mode, "teacher_out");
    let log_steps = golden(mode, "log_steps");
    let log_w = golden(mode, "log_w");
    let log_tau = golden(mode, "log_tau_m");
    let b = 4;
    let buf = |s: &Simulation, name: &str| s.buffer(s.buffer_id(name).unwrap()).to_vec();
    let (mut worst_out, mut worst_param) = (0.0f64, 0.0f64);
    let mut log_row = 0;
    let mut step = 0usize;
    sim.run_protocol(&mut |s| {
        // After step n the committed rates are the outputs the reference returns at step n + 1.
        let n = step;
        if n + 1 < 20_000 {
            let (y, ty) = (buf(s, "y.r"), buf(s, "ty.r"));
            for k in 0..b {
                worst_out = worst_out.max(rel(y[k], student.data[(n + 1) * b + k]));
                worst_out = worst_out.max(rel(ty[k], teacher.data[(n + 1) * b + k]));
            }
        }
        if log_row < log_steps.data.len() && log_steps.data[log_row] as usize == n {
            let w = [buf(s, "x_h.W")[0], buf(s, "h_y.W")[0]];
            let tau = [buf(s, "h.tau_m")[0], buf(s, "y.tau_m")[0]];
            for l in 0..2 {
                worst_param = worst_param.max(rel(w[l], log_w.data[log_row * 2 + l]));
                worst_param = worst_param.max(rel(tau[l], log_tau.data[log_row * 2 + l]));
            }
            log_row += 1;
        }
        step += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(log_row, log_steps.data.len(), "every logged step was compared");
    let final_w = golden(mode, "final_w");
    let final_tau = golden(mode, "final_tau_m");
    let w = [buf(&sim, "x_h.W")[0], buf(&sim, "h_y.W")[0]];
    let tau = [buf(&sim, "h.tau_m")[0], buf(&sim, "y.tau_m")[0]];
    for l in 0..2 {
        worst_param = worst_param.max(rel(w[l], final_w.data[l]));
        worst_param = worst_param.max(rel(tau[l], final_tau.data[l]));
    }
    eprintln!("{mode}: worst relative error: outputs {worst_out:e}, parameters {worst_param:e}");
    assert!(worst_out <= 1e-9, "{mode}: outputs differ by {worst_out:e} relative");
    assert!(
        worst_param <= 1e-9,
        "{mode}: parameters differ by {worst_param:e} relative"
    );
}

#[test]
fn lagline_gle_matches_the_authors_run() {
    check("gle", false);
}

#[test]
fn lagline_bp_matches_the_authors_run() {
    check("bp", true);
}

//! GLE errors against the exact offline adjoint on the LagNet (GLE Fig. 6; test-facts F2), with
//! the comparison of `examples/lagnet_adjoint.rs` over a CI-sized 30,100 steps.

#[allow(dead_code, reason = "the example's `main` is not called from the test")]
#[path = "../../../../examples/lagnet_adjoint.rs"]
mod example;

/// At ω = 0.49, 1.07 and 1.98 the GLE error of each first-layer neuron has the phase of the
/// adjoint λ up to the schedule's step delays (measured over the full run: |Δ| ≤ 0.066 rad,
/// about 4·ω·dt for the fast neuron; asserted: ≤ 5·ω·dt + 0.03), and |e|/|λ| follows the product
/// of (1 + ω²τᵐ²)/(1 + ω²τʳ²) along the path — 1 for the fast neuron, A7² for the slow one —
/// to within the tanh units' modulation (measured ≤ 8 %; asserted: 15 %).
#[test]
fn lagnet_gle_errors_have_the_phase_of_the_adjoint() {
    let rows = example::compare(30_100).unwrap();
    assert_eq!(rows.len(), 6);
    for r in rows {
        let what = format!("neuron {} at ω = {}", r.neuron, r.omega);
        assert!(
            r.phase_difference.abs() <= 5.0 * r.omega * 0.01 + 0.03,
            "{what}: phase difference {}",
            r.phase_difference
        );
        let rel = (r.gain_ratio / r.predicted_ratio - 1.0).abs();
        assert!(
            rel < 0.15,
            "{what}: |e|/|λ| = {} against {}",
            r.gain_ratio,
            r.predicted_ratio
        );
    }
}

/// The adjoint (AM) student learns from λ alone: after 22,100 steps of windows (30,100 in all)
/// its input weights are markedly closer to the teacher's (−0.5, 1) than after its first window
/// (asserted: distance below 0.85× the initial one).
#[test]
fn lagnet_adjoint_student_moves_towards_the_teacher() {
    let teacher = [-0.5, 1.0];
    let distance = |w: [f64; 2]| (w[0] - teacher[0]).hypot(w[1] - teacher[1]);
    let first = example::adjoint_student(8300, 8000, 300, 7e-2).unwrap();
    let trajectory = example::adjoint_student(30_100, 8000, 300, 7e-2).unwrap();
    let (start, end) = (distance(first[0].1), distance(trajectory.last().unwrap().1));
    assert!(end < 0.85 * start, "distance to the teacher {start} -> {end}");
}

/// glec's own `errors adjoint(window: 300)` (`models/gle_lagnet_adjoint.gle`, run by its
/// protocol) against the example's hand-written λ and weight update on the same network: both
/// record what each step reads, so the weights after 74 windows agree to rounding (the two
/// sum λ·x·dt in different orders; asserted: 1e-12 relative).
#[test]
fn adjoint_error_mode_matches_the_hand_written_adjoint() {
    let steps = 30_100;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gle_lagnet_adjoint.gle");
    let text = std::fs::read_to_string(&path).unwrap();
    let (model, diags) = gle_ir::check_source("gle_lagnet_adjoint.gle", &text);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let w = program.projections[3].0;
    let mut sim = gle_runtime::Simulation::new(model, program, std::path::Path::new("."), steps).unwrap();
    let start = sim.buffer(w).to_vec();
    sim.set_step_limit(steps as u64);
    sim.run_protocol(&mut |_| Ok(())).unwrap();
    let glec = sim.buffer(w).to_vec();
    let example = example::adjoint_student(steps, 8000, 300, 7e-2)
        .unwrap()
        .last()
        .unwrap()
        .1;
    for k in 0..2 {
        assert!(
            (glec[k] - example[k]).abs() <= 1e-12 * example[k].abs(),
            "W[{k}]: {} in glec, {} in the example (from {})",
            glec[k],
            example[k],
            start[k]
        );
        assert!((glec[k] - start[k]).abs() > 0.1, "W[{k}] barely moved");
    }
}

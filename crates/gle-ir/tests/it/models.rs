//! Every bundled model checks without diagnostics; its IR dump is snapshotted.

use gle_ir::{Connectivity, Plasticity, Role, check_source};

fn check(path: &std::path::Path) -> gle_ir::Model {
    let text = std::fs::read_to_string(path).unwrap();
    let (model, diags) = check_source(&path.display().to_string(), &text);
    assert!(diags.is_empty(), "{}: {diags:#?}", path.display());
    model.unwrap()
}

#[test]
fn ir_dump_of_every_model() {
    insta::glob!("../../../../models", "**/*.gle", |path| {
        let model = check(path);
        insta::assert_snapshot!(model.dump());
    });
}

fn model(name: &str) -> gle_ir::Model {
    check(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models")
            .join(name),
    )
}

#[test]
fn every_model_starts_with_a_comment_saying_what_it_reproduces() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "gle") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("// Reproduces"), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 9, "expected the nine bundled models, found {n}");
}

/// G2 of test-facts.md: the GLE MNIST-1D "15k" network has 14,956 weights and biases.
#[test]
fn mnist1d_15k_has_the_papers_parameter_count() {
    let m = model("gle_mnist1d_15k.gle");
    assert_eq!(m.summary().learnable, 14_956);
    // Heterogeneous groups: 18 × (0.6, 0.2), 18 × (1.2, 0.2), 17 × (1.2, 1.2) in every hidden layer.
    let h3 = m.populations.iter().find(|p| p.name == "h3").unwrap();
    let tau_m = &h3.params[0];
    let counts: Vec<usize> = tau_m.segments.iter().map(|s| s.0).collect();
    assert_eq!(
        counts,
        [18, 35],
        "equal neighbouring groups merge: 0.6 ×18, then 1.2 ×35"
    );
    let tau_r = &h3.params[1];
    assert_eq!(tau_r.segments.iter().map(|s| s.0).collect::<Vec<_>>(), [36, 17]);
}

/// LagLine: teachers are in no energy term; the students learn w and τᵐ (4 learnable scalars).
#[test]
fn lagline_roles_and_learnable_parameters() {
    let m = model("gle_lagline.gle");
    let roles: Vec<(&str, Role)> = m.populations.iter().map(|p| (p.name.as_str(), p.role)).collect();
    assert_eq!(
        roles,
        [
            ("th", Role::Fixed),
            ("ty", Role::Fixed),
            ("h", Role::Learner),
            ("y", Role::Learner)
        ]
    );
    assert_eq!(m.summary().learnable, 4);
    let learned: Vec<&str> = m
        .projections
        .iter()
        .filter(|p| matches!(p.plasticity, Plasticity::Learn { .. }))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(learned, ["x_h", "h_y"]);
    // Time constants are recognised from their use in D[τ].
    let retro = &m.neurons[0];
    let tc: Vec<bool> = retro.params.iter().map(|p| p.time_constant).collect();
    assert_eq!(tc, [true, true, false]);
}

/// The lag-free LE chain uses identity maps; the microcircuit targets compartments.
#[test]
fn connectivity_and_compartments() {
    let chain = model("le_chain.gle");
    assert!(
        chain
            .projections
            .iter()
            .all(|p| p.connectivity == Connectivity::Identity)
    );
    let mc = model("le_microcircuit_bars.gle");
    let up1 = mc.projections.iter().find(|p| p.name == "up1").unwrap();
    assert_eq!(up1.compartment, Some(0));
    assert_eq!(up1.shape, (30, 9));
    assert_eq!(mc.rules.len(), 4);
    assert_eq!(mc.rules[0].clip, Some((-4.0, 4.0)));
}

/// G3: the learning-rate arithmetic of the experiments, as the bundled models write it.
#[test]
fn learning_rate_arithmetic() {
    let lr = |m: &gle_ir::Model| match m.learning.optimizer {
        gle_ir::Optimizer::Sgd { lr } | gle_ir::Optimizer::Momentum { lr, .. } | gle_ir::Optimizer::Adam { lr, .. } => {
            lr
        }
    };
    assert!(
        (lr(&model("gle_lagline.gle")) - 1e-4).abs() < 1e-18,
        "LagLine: 1e-6/0.01"
    );
    assert!(
        (lr(&model("gle_mnist1d_15k.gle")) - 1e-3).abs() < 1e-18,
        "MNIST-1D: 5e-3·72/360"
    );
    assert!(
        (lr(&model("gle_lagnet.gle")) - 2e-4).abs() < 1e-18,
        "LagNet: 2e-2·0.01/1"
    );
    // LagLine: (50 + 4000)/0.01 steps; LagNet: 1001/0.01.
    let steps = |m: &gle_ir::Model| -> usize {
        m.protocol
            .items
            .iter()
            .map(|i| match i {
                gle_ir::ProtocolItem::Phase(p) => match p.duration {
                    gle_ir::Duration::Steps(n) => n,
                    gle_ir::Duration::Data { .. } => 0,
                },
                gle_ir::ProtocolItem::Repeat { .. } => 0,
            })
            .sum()
    };
    assert_eq!(steps(&model("gle_lagline.gle")), 405_000);
    assert_eq!(steps(&model("gle_lagnet.gle")), 100_100);
}

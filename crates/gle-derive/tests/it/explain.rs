//! `glec explain` of every bundled model is snapshotted.

use gle_derive::explain::{Format, explain};

#[test]
fn explain_every_model() {
    insta::glob!("../../../../models", "**/*.gle", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
        assert!(diags.is_empty(), "{diags:?}");
        let model = model.unwrap();
        let program = gle_derive::compile(&model).unwrap_or_else(|e| panic!("{}: {}", path.display(), e.message));
        insta::assert_snapshot!(explain(&model, &program, Format::Text));
    });
}

/// The GLE equations of math.md §2 and §4.5 appear in the derived form.
#[test]
fn lagline_explains_as_the_gle_equations() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gle_lagline.gle");
    let (model, _) = gle_ir::check_source("lagline.gle", &std::fs::read_to_string(path).unwrap());
    let model = model.unwrap();
    let text = explain(&model, &gle_derive::compile(&model).unwrap(), Format::Markdown);
    for line in [
        "u' = (input + gamma * e - u) / tau_m",
        "uhat = u + tau_r * u'",
        "r = softplus(uhat)",
        "phi'(uhat) = sigmoid(uhat)",
        "error neuron (GLE, time constants swapped): tau_r * v' = g - v,  e = v + tau_m * v'",
        "dx_h.W/dt = -eta * dE/dW = eta * h.e x^T",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(text.starts_with("# model gle_lagline"));
}

/// The LaTeX form writes the membrane equation as a fraction over τᵐ.
#[test]
fn latex_format() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gle_lagline.gle");
    let (model, _) = gle_ir::check_source("lagline.gle", &std::fs::read_to_string(path).unwrap());
    let model = model.unwrap();
    let text = explain(&model, &gle_derive::compile(&model).unwrap(), Format::Latex);
    assert!(
        text.contains(r"\dot{u} &= \frac{I + \gamma \cdot e - u}{\tau^{m}}"),
        "{text}"
    );
    assert!(
        text.contains(r"\tau^{r} \dot{v} &= g - v, \quad e = v + \tau^{m} \cdot \dot{v}"),
        "{text}"
    );
    assert_eq!(text.matches(r"\begin{align*}").count(), 4);
}

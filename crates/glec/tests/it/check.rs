//! `glec check`, `glec emit ir` and argument handling.

use crate::{gle_files, glec};

#[test]
fn check_accepts_every_bundled_model() {
    let models = gle_files("models");
    assert!(models.len() >= 9);
    for m in models {
        let out = glec(&["check", &m]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{m}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.starts_with(&format!("{m}: ok: model `")), "{stdout}");
        assert!(
            stdout.contains("populations") || stdout.contains("1 population,"),
            "{stdout}"
        );
        assert!(out.stderr.is_empty(), "{m}: unexpected stderr");
    }
}

#[test]
fn check_summary_counts_mnist1d_15k() {
    let out = glec(&["check", "models/gle_mnist1d_15k.gle"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "models/gle_mnist1d_15k.gle: ok: model `gle_mnist1d_15k`: 7 populations, 328 neurons, 14628 synapses, 14956 learnable parameters"
    );
}

#[test]
fn check_rejects_every_invalid_file_with_a_spanned_error() {
    for f in gle_files("tests/invalid") {
        let out = glec(&["check", &f]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{f}: {stderr}");
        assert!(stderr.starts_with("error[E"), "{f}: {stderr}");
        assert!(stderr.contains(&format!("--> {f}:")), "{f}: no file:line:col\n{stderr}");
        assert!(!stderr.contains("panicked"), "{f}");
        assert!(out.stdout.is_empty(), "{f}: unexpected stdout");
    }
}

#[test]
fn json_format_for_editors() {
    let out = glec(&[
        "check",
        "--format",
        "json",
        "tests/invalid/name_unknown_neuron_type.gle",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["ok"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "E0200");
    assert_eq!(d["line"], 12);
    assert_eq!(d["help"], "did you mean `Gle`?");

    let out = glec(&["check", "--format", "json", "models/gle_lagline.gle"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["summary"]["learnable"], 4);
}

#[test]
fn unreadable_inputs_are_reported_not_panicked() {
    let out = glec(&["check", "models/no_such_model.gle"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot read `models/no_such_model.gle`"),
        "{stderr}"
    );

    let dir = std::env::temp_dir().join(format!("glec-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("binary.gle");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let out = glec(&["check", binary.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not UTF-8"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = glec(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let out = glec(&["frobnicate", "models/gle_lagline.gle"]);
    assert_eq!(out.status.code(), Some(2));
    let out = glec(&["check", "--format", "yaml", "models/gle_lagline.gle"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn emit_ir_prints_the_dump() {
    let out = glec(&["emit", "ir", "models/le_chain.gle"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("model le_chain\n"));
    assert!(text.contains("projection l4_l5 : l4.r -> l5  identity 1  fixed  feedback transpose"));
}

#[test]
fn emit_rust_prints_the_model_macro_expansion() {
    let out = glec(&["emit", "rust", "models/le_chain.gle"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pub mod le_chain {"), "{text}");
    assert!(text.contains(r#""/", "models/le_chain.gle""#), "{text}");
    assert!(
        text.contains("fn step(") && text.contains("data: &mut [Vec<f64>],"),
        "{text}"
    );
    let bad = glec(&["emit", "rust", "tests/invalid/no_such_file.gle"]);
    assert_eq!(bad.status.code(), Some(1));
}

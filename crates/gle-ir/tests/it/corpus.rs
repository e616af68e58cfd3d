//! The invalid-input corpus in `tests/invalid/`: every file is rejected with at least one spanned
//! error, and its rendered diagnostics are snapshotted.

use gle_ir::check_source;
use gle_syntax::{Severity, SourceFile};

#[test]
fn invalid_corpus_diagnostics() {
    let mut files = 0;
    insta::glob!("../../../../tests/invalid", "*.gle", |path| {
        files += 1;
        let text = std::fs::read_to_string(path).unwrap();
        let name = format!("tests/invalid/{}", path.file_name().unwrap().to_string_lossy());
        let (model, diags) = check_source(&name, &text);
        assert!(model.is_none(), "{name} was accepted");
        assert!(diags.iter().any(|d| d.severity == Severity::Error), "{name}: no error");
        for d in &diags {
            assert!(
                d.span.end <= text.len() && d.span.start <= d.span.end,
                "{name}: bad span {:?}",
                d.span
            );
            assert!(
                d.code.starts_with('E') && d.code.len() == 5,
                "{name}: bad code {}",
                d.code
            );
        }
        let file = SourceFile::new(name, text);
        let rendered: Vec<String> = diags.iter().map(|d| d.render(&file)).collect();
        insta::assert_snapshot!(rendered.join("\n\n"));
    });
    assert!(files >= 40, "the corpus must hold at least 40 files, found {files}");
}

/// Every code used in the corpus is documented in docs/errors.md, and every documented code of
/// the front end (below E0700; later stages have their own tests) is exercised by at least one
/// corpus file.
#[test]
fn error_codes_are_documented_and_covered() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let docs = std::fs::read_to_string(root.join("docs/errors.md")).unwrap();
    let documented: std::collections::BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with('E') && c.len() == 5 && *c < "E0700")
        .map(str::to_string)
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(root.join("tests/invalid")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for d in check_source("x.gle", &text).1 {
            used.insert(d.code.to_string());
        }
    }
    let undocumented: Vec<&String> = used.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "codes missing from docs/errors.md: {undocumented:?}"
    );
    let unexercised: Vec<&String> = documented.difference(&used).collect();
    assert!(
        unexercised.is_empty(),
        "documented codes no corpus file triggers: {unexercised:?}"
    );
}

/// Independent errors in different declarations are all reported.
#[test]
fn several_errors_in_one_file() {
    let text = "neuron N {\n    param tau = 1\n    state u\n    rate r = D[tau] u\n    mismatch e = D[tau] u - input\n}\n\
                population a[2] : N(tau: [1, 2, 3])\npopulation b[1] : M\npopulation c[0] : N\nrun {\n    dt 0.1\n    steps 1\n}\n";
    let (_, diags) = check_source("x.gle", text);
    let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0302", "E0200", "E0501"]);
    assert_eq!(diags[1].help.as_deref(), Some("did you mean `N`?"));
}

//! Rust backend tests: the emitted Rust of every bundled model is snapshotted (it is compiled
//! and run against the interpreter in gle-macros' tests, through `model!`).

#[test]
fn rust_of_every_model() {
    insta::glob!("../../../../models", "**/*.gle", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
        assert!(diags.is_empty(), "{diags:?}");
        let model = model.unwrap();
        let program = gle_derive::compile(&model).unwrap();
        let file = format!("models/{}", path.file_name().unwrap().to_string_lossy());
        let code = gle_codegen::emit_rust(&model, &program, &gle_codegen::Source::File(&file)).unwrap();
        insta::assert_snapshot!(code);
    });
}

#[test]
fn inline_source_is_kept_verbatim() {
    let text = "model tiny\nneuron N {\n    state u\n    rate r = u\n    mismatch e = D[1] u - input\n}\ninput x[1] = 1\npopulation p[1] : N\nconnect x -> p : identity\nrun {\n    dt 0.1\n    duration 1\n}\n";
    let (model, diags) = gle_ir::check_source("tiny", text);
    assert!(diags.is_empty(), "{diags:?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    let code = gle_codegen::emit_rust(&model, &program, &gle_codegen::Source::Inline(text)).unwrap();
    assert!(code.contains("pub mod tiny"), "{code}");
    assert!(code.contains(&format!("{text:?}")), "{code}");
}

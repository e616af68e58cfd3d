//! The Cranelift IR of every bundled model's compiled step is snapshotted (IR text, not host
//! assembly: it is the same on every machine with 64-bit pointers).

#[test]
fn clif_of_every_model() {
    insta::glob!("../../../../models", "**/*.gle", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
        assert!(diags.is_empty(), "{diags:?}");
        let model = model.unwrap();
        let program = gle_derive::compile(&model).unwrap();
        let step = gle_jit::compile(&program, model.protocol.batch).unwrap();
        insta::assert_snapshot!(step.clif());
    });
}

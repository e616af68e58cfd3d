//! The Cranelift IR of every bundled model's compiled step, as `glec run` compiles it (plain-SGD
//! updates absorbed where they can be), is snapshotted (IR text, not host assembly: it is the
//! same on every machine with 64-bit pointers).

#[test]
fn clif_of_every_model() {
    insta::glob!("../../../../models", "**/*.gle", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
        assert!(diags.is_empty(), "{diags:?}");
        let model = model.unwrap();
        let program = gle_derive::compile(&model).unwrap();
        let sgd = gle_runtime::sgd_learnables(&model, &program);
        let step = gle_jit::compile_absorbing(&program, model.protocol.batch, 1, &sgd).unwrap();
        insta::assert_snapshot!(step.clif());
    });
}

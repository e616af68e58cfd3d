//! The macro's error cases, compiled by trybuild: a missing file, a syntax error and a shape
//! error, each a compile error at the macro call naming the model's `file:line:col`.

#[test]
fn model_errors_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/it/errors/*.rs");
}

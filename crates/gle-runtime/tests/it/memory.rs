//! A simulation whose buffers cannot fit in memory is refused before anything is allocated.

use gle_runtime::check_memory;

const MODEL: &str = "neuron N {\n    param tau = 1\n    state u\n    let uhat = D[tau] u\n    rate r = uhat\n    mismatch e = D[tau] u - input\n}\n\
    input x[1] = 1\npopulation a[1000] : N\nconnect x -> a : dense(init: 0.5)\nrun {\n    dt 0.1\n    steps 10\n}\n";

#[test]
fn buffers_beyond_the_memory_available_are_refused() {
    let (model, diags) = gle_ir::check_source("test.gle", MODEL);
    assert!(diags.is_empty(), "{diags:#?}");
    let program = gle_derive::compile(&model.unwrap()).unwrap();
    let gigabyte = Some(1_000_000_000);
    assert!(check_memory(&program, 100, gigabyte).is_ok());
    assert!(
        check_memory(&program, 1_000_000, None).is_ok(),
        "unknown memory: no check"
    );
    let error = check_memory(&program, 1_000_000, gigabyte).unwrap_err().message;
    assert!(
        error.contains("GB at batch 1000000, more than the 1.0 GB of memory available; lower `batch`"),
        "{error}"
    );
    let error = check_memory(&program, usize::MAX / 2, None).unwrap_err().message;
    assert!(error.contains("exceed the address space; lower `batch`"), "{error}");
    // At batch 1 only the sizes can shrink.
    let error = check_memory(&program, 1, Some(1000)).unwrap_err().message;
    assert!(
        error.contains("at batch 1, more than the 0.0 GB of memory available; smaller populations"),
        "{error}"
    );
}

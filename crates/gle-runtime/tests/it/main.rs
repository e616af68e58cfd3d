//! Runtime tests: the reference interpreter against the authors' golden runs and the closed
//! forms of test-facts.md.

mod commits;
mod data;
mod facts;
mod golden;
mod inputs;
mod lagnet;
mod memory;
mod noise;
mod optim;
mod resume;

use gle_runtime::Simulation;

/// A simulation of the model in `src` that may run `steps` steps.
fn sim(src: &str, steps: usize) -> Simulation {
    let (model, diags) = gle_ir::check_source("test.gle", src);
    assert!(diags.is_empty(), "{diags:#?}");
    let model = model.unwrap();
    let program = gle_derive::compile(&model).unwrap();
    Simulation::new(model, program, std::path::Path::new("."), steps).unwrap()
}

/// The values of the buffer named `name`.
fn buf(s: &Simulation, name: &str) -> Vec<f64> {
    s.buffer(s.buffer_id(name).unwrap_or_else(|| panic!("no buffer {name}")))
        .to_vec()
}

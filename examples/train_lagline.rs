//! Trains the GLE LagLine student through `model!` and prints its learned weights and
//! membrane time constants, as `glec run models/gle_lagline.gle` prints them.
//!
//! `cargo run --release -p gle-macros --example train_lagline -- [STEPS]`
//! (default: the model's whole protocol; `glec run … --steps STEPS` runs the same steps).

gle_macros::model!("../../models/gle_lagline.gle");

fn main() {
    let steps = match std::env::args().nth(1).map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            eprintln!("usage: train_lagline [STEPS]");
            std::process::exit(2);
        }
    };
    let run = || -> Result<gle_lagline::Model, gle_runtime::RunError> {
        let mut net = match steps {
            Some(n) => gle_lagline::Model::with_step_limit(n)?,
            None => gle_lagline::Model::new()?,
        };
        net.run_protocol()?;
        Ok(net)
    };
    let net = match run() {
        Ok(net) => net,
        Err(e) => {
            eprintln!("error: {}", e.message);
            std::process::exit(1);
        }
    };
    println!("after {} steps:", net.simulation().steps());
    let p = net.params();
    for (name, values) in [
        ("x_h.W", p.x_h_w),
        ("h.tau_m", p.h_tau_m),
        ("h_y.W", p.h_y_w),
        ("y.tau_m", p.y_tau_m),
    ] {
        let shown: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
        println!("  {name} = [{}]", shown.join(", "));
    }
}

//! Checks a `.gle` file with the glec library and prints its populations with their parameter
//! groups and its projections: the model IR seen from a Rust program.
//!
//! `cargo run -p gle-ir --example inspect_model -- models/gle_mnist1d_15k.gle`

use gle_ir::{Init, Printer, check_source};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: inspect_model MODEL.gle");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read `{path}`: {e}");
            std::process::exit(1);
        }
    };
    let (model, diags) = check_source(&path, &text);
    let file = gle_syntax::SourceFile::new(path.as_str(), text.as_str());
    for d in &diags {
        eprintln!("{}\n", d.render(&file));
    }
    let Some(model) = model else { std::process::exit(1) };
    println!("model {}", model.name);
    for pop in &model.populations {
        let neuron = &model.neurons[pop.neuron];
        println!(
            "  population {} [{}] : {} ({:?})",
            pop.name, pop.size, neuron.name, pop.role
        );
        for (decl, value) in neuron.params.iter().zip(&pop.params) {
            let groups: Vec<String> = value
                .segments
                .iter()
                .map(|(count, init)| match init {
                    Init::Const(v) => format!("{count} × {v}"),
                    other => format!("{count} × {other:?}"),
                })
                .collect();
            println!("    {:<8} {}", decl.name, groups.join(", "));
        }
    }
    let printer = Printer::new(&model);
    for proj in &model.projections {
        println!("  projection {} : {} × {}", proj.name, proj.shape.0, proj.shape.1);
    }
    if let Some(energy) = &model.energy {
        println!("  energy {} = {}", energy.name, printer.expr(&energy.value));
    }
}

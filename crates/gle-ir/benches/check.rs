//! `glec check` cost on a generated 10,000-line model with 500 populations: parsing plus semantic
//! analysis (the work `glec check` does besides reading the file). The generated model is also
//! written to `target/bench-10k.gle` so the whole CLI can be timed with hyperfine.

use criterion::{Criterion, criterion_main};
use std::fmt::Write;
use std::hint::black_box;

/// A valid model of at least `lines` lines: four neuron types, `pops` populations with three
/// parameter groups each, a chain of dense learnable projections with skip connections, and
/// enough constants to fill the remaining lines.
fn generate(pops: usize, lines: usize) -> String {
    let mut s = String::from("// generated benchmark model\nmodel bench\n\n");
    for (k, phi) in ["tanh", "softplus", "sigmoid", "linear"].iter().enumerate() {
        let _ = writeln!(
            s,
            "neuron T{k} {{\n    param tau_m = 1\n    param tau_r = 0.5\n    param gamma = 0\n    state u\n    let uhat = D[tau_r] u\n    rate r = {phi}(uhat)\n    mismatch e = D[tau_m] u - input\n}}\n"
        );
    }
    let _ = writeln!(s, "input x[32] = sin(t) + 0.5 * cos(3 * t)\n");
    let mut body = String::new();
    for i in 0..pops {
        let _ = writeln!(
            body,
            "population p{i}[32] : T{} {{\n    group 10 {{ tau_m: 1.0, tau_r: 0.5 }}\n    group 11 {{ tau_m: c{}, tau_r: 0.5 }}\n    group 11 {{ tau_m: 2, tau_r: 2 }}\n}}",
            i % 4,
            i % 100
        );
    }
    let _ = writeln!(
        body,
        "connect x -> p0 : dense(init: fan_in_uniform, bias: fan_in_uniform) learn"
    );
    for i in 1..pops {
        let _ = writeln!(
            body,
            "connect p{} -> p{i} : dense(init: fan_in_uniform, bias: fan_in_uniform) learn",
            i - 1
        );
        if i >= 2 {
            let _ = writeln!(
                body,
                "connect s{i} = p{} -> p{i} : dense(init: normal(0, 0.05)) learn(lr: 0.5)",
                i - 2
            );
        }
    }
    let all: Vec<String> = (0..pops).map(|i| format!("p{i}")).collect();
    let _ = writeln!(
        body,
        "\nenergy E = mismatch({}) + 0.1 * mse(p{}.r, x)\n",
        all.join(", "),
        pops - 1
    );
    let _ = writeln!(
        body,
        "learn {{\n    errors prospective\n    optimizer adam(lr: 1e-3)\n}}\n"
    );
    let _ = writeln!(body, "run {{\n    dt 0.1\n    batch 10\n    steps 1000\n}}");
    let used = s.lines().count() + body.lines().count();
    let consts = lines.saturating_sub(used).max(100);
    for i in 0..consts {
        let _ = writeln!(s, "const c{i} = {}.5 * 0.1 + 1", i % 7);
    }
    s.push('\n');
    s + &body
}

fn bench_check(c: &mut Criterion) {
    let text = generate(500, 10_000);
    assert!(text.lines().count() >= 10_000);
    let (model, diags) = gle_ir::check_source("bench-10k.gle", &text);
    assert!(model.is_some(), "generated model must check: {:?}", diags.first());
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-10k.gle");
    let _ = std::fs::write(target, &text);
    let mut group = c.benchmark_group("check");
    group.sample_size(20);
    group.bench_function("10k_lines_500_populations", |b| {
        b.iter(|| gle_ir::check_source("bench-10k.gle", black_box(&text)))
    });
    group.finish();
}

mod group {
    #![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]
    criterion::criterion_group!(benches, super::bench_check);
}

criterion_main!(group::benches);

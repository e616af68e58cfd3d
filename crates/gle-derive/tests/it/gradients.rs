//! Gradient statements may be skipped in phases that do not learn: nothing else reads what they
//! write, and they write only the learnables' gradient buffers. Commits may exchange buffers
//! only where the staged values are rewritten before anything reads them.

use gle_derive::program::{Program, Stmt};
use std::collections::HashSet;

#[test]
fn gradient_statements_feed_only_the_optimiser() {
    insta::glob!("../../../../models", "**/*.gle", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
        assert!(diags.is_empty(), "{diags:?}");
        let program = gle_derive::compile(&model.unwrap()).unwrap();
        let grads: HashSet<usize> = program.learnables.iter().map(|l| l.grad).collect();
        for stmt in &program.stmts {
            match *stmt {
                Stmt::Outer { grad, .. } | Stmt::Mean { grad, .. } => {
                    assert!(stmt.computes_gradient());
                    assert!(
                        grads.contains(&grad),
                        "{}: writes a non-gradient buffer",
                        path.display()
                    );
                }
                _ => assert!(!stmt.computes_gradient()),
            }
            for b in program.reads_and_writes(stmt).0 {
                assert!(
                    !grads.contains(&b),
                    "{}: `{}` is read by a statement",
                    path.display(),
                    program.buffers[b].name
                );
            }
        }
        for &(dst, src) in program.commits.iter().chain(&program.swaps) {
            assert!(!grads.contains(&dst) && !grads.contains(&src), "{}", path.display());
        }
    });
}

fn compiled(model: &str) -> Program {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(model);
    let text = std::fs::read_to_string(&path).unwrap();
    let (model, diags) = gle_ir::check_source(&path.display().to_string(), &text);
    assert!(diags.is_empty(), "{diags:?}");
    gle_derive::compile(&model.unwrap()).unwrap()
}

/// Every commit the derivation makes stages its value in a buffer of its own, so each one is
/// an exchange; and a staged buffer that a statement reads before its writer, that its writer
/// fills only in part, or that a metric reads, would be copied instead.
#[test]
fn commits_exchange_buffers_only_when_the_staged_values_are_never_read() {
    insta::glob!("../../../../models", "**/*.gle", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (model, _) = gle_ir::check_source(&path.display().to_string(), &text);
        let program = gle_derive::compile(&model.unwrap()).unwrap();
        assert!(program.commits.is_empty(), "{}: {:?}", path.display(), program.commits);
        assert!(!program.swaps.is_empty());
    });
    let program = compiled("gle_mnist1d_15k.gle");
    let (dst, src) = program.swaps[0];
    let writer = program
        .stmts
        .iter()
        .position(|s| program.reads_and_writes(s).1.contains(&src))
        .unwrap();
    let len = program.buffers[src].len;

    let mut read_first = program.clone();
    read_first.stmts.insert(
        writer,
        Stmt::Softmax {
            out: program.populations[0].udot,
            x: src,
            len,
        },
    );
    assert!(!read_first.swappable((dst, src)));

    let mut partly = program.clone();
    let Stmt::Map { len: n, .. } = &mut partly.stmts[writer] else {
        panic!("the staged value is a map's output")
    };
    *n = len - 1;
    assert!(!partly.swappable((dst, src)));

    let mut seen = program.clone();
    seen.costs[0].prediction = src;
    assert!(!seen.swappable((dst, src)));

    assert!(program.swappable((dst, src)));
}

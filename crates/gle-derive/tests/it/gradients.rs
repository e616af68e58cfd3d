//! Gradient statements may be skipped in phases that do not learn: nothing else reads what they
//! write, and they write only the learnables' gradient buffers.

use gle_derive::program::{Program, Stmt};
use gle_derive::sym::Leaf;
use std::collections::HashSet;

/// The buffers a statement reads.
fn reads(program: &Program, stmt: &Stmt) -> Vec<usize> {
    match stmt {
        Stmt::Map { outs, .. } => outs
            .iter()
            .flat_map(|(_, id)| program.graph.leaves(*id))
            .filter_map(|l| match l {
                Leaf::Buf(b) => Some(b),
                _ => None,
            })
            .collect(),
        &Stmt::MatVec {
            out, w, x, accumulate, ..
        } => {
            if accumulate {
                vec![out, w, x]
            } else {
                vec![w, x]
            }
        }
        &Stmt::MatTVec { w, x, .. } => vec![w, x],
        &Stmt::Outer { a, x, .. } => vec![a, x],
        &Stmt::Mean { x, .. } => vec![x],
        &Stmt::Softmax { x, .. } => vec![x],
    }
}

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
            for b in reads(&program, stmt) {
                assert!(
                    !grads.contains(&b),
                    "{}: `{}` is read by a statement",
                    path.display(),
                    program.buffers[b].name
                );
            }
        }
        for &(dst, src) in &program.commits {
            assert!(!grads.contains(&dst) && !grads.contains(&src), "{}", path.display());
        }
    });
}

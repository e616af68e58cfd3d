//! The simplifier and the differentiation rules.

use gle_derive::sym::{Graph, Leaf};
use gle_ir::builtins::Builtin;

#[test]
fn hash_consing_and_exact_simplifications() {
    let mut g = Graph::new();
    let x = g.leaf(Leaf::Param(0));
    let y = g.leaf(Leaf::Param(1));
    let a = g.add(x, y);
    let b = g.add(y, x);
    assert_eq!(a, b, "commutative operands are ordered");
    let zero = g.num(0.0);
    let one = g.num(1.0);
    assert_eq!(g.add(x, zero), x);
    assert_eq!(g.mul(x, one), x);
    let nx = g.neg(x);
    assert_eq!(g.neg(nx), x);
    let two = g.num(2.0);
    let three = g.num(3.0);
    let six = g.mul(two, three);
    assert_eq!(g.as_num(six), Some(6.0));
    // x − y is stored as x + (−y): the same number in IEEE arithmetic.
    let d = g.sub(x, y);
    let v = g.eval(d, &mut |l| if l == Leaf::Param(0) { 0.1 } else { 0.3 });
    assert_eq!(v, 0.1 - 0.3);
}

#[test]
fn derivatives_of_builtins() {
    let mut g = Graph::new();
    let x = g.leaf(Leaf::Uhat);
    let one = g.num(1.0);
    for (b, at, expected) in [
        (Builtin::Tanh, 0.3, 1.0 - 0.3f64.tanh().powi(2)),
        (Builtin::Softplus, 0.7, 1.0 / (1.0 + (-0.7f64).exp())),
        (Builtin::HardSigmoid, 0.5, 1.0),
        (Builtin::HardSigmoid, 1.5, 0.0),
        (Builtin::Relu, -0.2, 0.0),
        (Builtin::Relu, 0.2, 1.0),
        (Builtin::Exp, 0.4, 0.4f64.exp()),
        (Builtin::Log, 2.0, 0.5),
    ] {
        let f = g.call(gle_derive::sym::Fun::B(b), vec![x]);
        let d = g.grad(f, one, &[Leaf::Uhat])[0];
        let v = g.eval(d, &mut |_| at);
        assert!((v - expected).abs() < 1e-15, "{b:?}'({at}) = {v}, expected {expected}");
    }
}

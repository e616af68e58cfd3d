//! Tests of the derivation: explain snapshots of every bundled model, symbolic derivatives
//! against forward-mode automatic differentiation, and the simplifier's exactness rules.

mod autodiff;
mod explain;
mod gradients;
mod sym;

//! JIT tests: every bundled model and 200 random ones give the interpreter's trajectories; the
//! Cranelift IR of every model is snapshotted.

mod clif;
mod equivalence;
mod random;

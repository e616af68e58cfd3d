//! JIT tests: every bundled model gives the interpreter's trajectories; the Cranelift IR of
//! every model is snapshotted.

mod equivalence;

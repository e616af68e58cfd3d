//! JIT tests: every bundled model and 200 random ones give the interpreter's trajectories; the
//! Cranelift IR of every model is snapshotted; the compiled products give the plain sums, the row `tanh` the scalar function; runs
//! of steps in one call give what single steps give.

mod chunks;
mod clif;
mod equivalence;
mod products;
mod random;
mod tanh_rows;

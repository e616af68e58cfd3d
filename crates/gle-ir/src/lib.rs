//! Semantic analysis of `.gle` models and the typed model IR.
//!
//! [`check_source`] parses and checks a file: names are resolved (with "did you mean"
//! suggestions), shapes of parameter lists, groups and projections are checked against population
//! sizes, kinds (state, parameter, input, rate) are enforced where they matter, and ranges (τ > 0,
//! τ ≥ dt, dt > 0, sizes ≥ 1) are validated. The result is a [`Model`] whose populations are
//! vectors and projections matrices, with a stable text dump ([`Model::dump`]).
//!
//! This crate does no I/O.

pub mod builtins;
mod check;
mod diag;
pub mod dump;
pub mod eval;
pub mod ir;
pub mod math;
mod resolve;
pub mod suggest;
pub mod symbols;

pub use check::{MAX_SEED, SEED_RULE, check, check_source, check_source_with, check_with, override_problem};
pub use dump::Printer;
pub use ir::*;

/// Counts of what a model contains, for `glec check`'s one-line summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of populations.
    pub populations: usize,
    /// Number of neurons over all populations.
    pub neurons: usize,
    /// Number of synapses (weights of all projections; a diagonal or identity map has one per
    /// postsynaptic neuron).
    pub synapses: usize,
    /// Number of learnable scalars: learned weights, biases and neuron parameters.
    pub learnable: usize,
}

impl Model {
    /// Counts populations, neurons, synapses and learnable parameters.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            populations: self.populations.len(),
            neurons: self.populations.iter().map(|p| p.size).sum(),
            synapses: 0,
            learnable: 0,
        };
        for pr in &self.projections {
            let (rows, cols) = pr.shape;
            let (weights, biases) = match &pr.connectivity {
                Connectivity::Dense { bias, .. } => (rows * cols, if bias.is_some() { rows } else { 0 }),
                Connectivity::Diagonal { .. } => (rows, 0),
                Connectivity::Identity => (rows, 0),
            };
            s.synapses += weights;
            if matches!(pr.plasticity, Plasticity::Learn { .. }) {
                s.learnable += weights + biases;
            }
        }
        for p in &self.populations {
            s.learnable += p.params.iter().filter(|v| v.learn).count() * p.size;
        }
        s
    }
}

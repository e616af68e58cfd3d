//! The offline exact-adjoint error mode (`errors adjoint(window: N)`, math.md §9.10): what the
//! runtime records of every step of a window and how it integrates the adjoint λ backwards over
//! the window to get the weight gradients `−∫ λ xᵀ dt`.
//!
//! In this mode the step program computes, for each learner, only its *local* error (the output
//! cost's `φ'·ε`, zero for hidden populations) and sends no errors down; the runtime adds the
//! errors from above as `φ' ⊙ Wᵀλ` in its backward pass:
//!
//! ```text
//! α_p(n) = e_p(n) + φ'_p(n) ⊙ Σ_{p→q} W_qᵀ λ_q(n)
//! λ_p(n) = e^{−dt/τᵐ} λ_p(n+1) + dt/τᵐ · (α_p(n+1) − τʳ/dt · (α_p(n+1) − α_p(n))),  λ_p(last) = 0
//! ```
//!
//! Every recorded quantity of step n is the value the step read or computed (buffers that the
//! step's commits overwrite are recorded before the step, the others after it).

use crate::program::BufId;

/// A time constant of the backward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tau {
    /// A per-neuron parameter buffer (shared across the batch).
    Param(BufId),
    /// The same number for every neuron.
    Num(f64),
}

/// A learner population in the backward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct AdjointPopulation {
    /// Population index in the model.
    pub population: usize,
    /// Neurons.
    pub len: usize,
    /// The local error the step computes (`φ'·ε` of the output cost, zero for hidden layers).
    pub local_error: BufId,
    /// φ'(ŭ) as the step reads it.
    pub slope: BufId,
    /// τᵐ.
    pub tau_m: Tau,
    /// τʳ (0 for a rate that reads `u`).
    pub tau_r: Tau,
}

/// How a projection sends λ of its post population down to its pre population.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AdjointMap {
    /// `Wᵀ λ` with a `rows × cols` matrix (the weights, or the fixed feedback matrix).
    Dense {
        /// The matrix.
        w: BufId,
    },
    /// `w ⊙ λ`.
    Diagonal {
        /// The diagonal.
        w: BufId,
    },
    /// `λ`.
    Identity,
}

/// A projection between two learners, seen backwards.
#[derive(Clone, Debug, PartialEq)]
pub struct AdjointLink {
    /// Index in [`AdjointPlan::populations`] of the presynaptic learner.
    pub pre: usize,
    /// Index in [`AdjointPlan::populations`] of the postsynaptic learner.
    pub post: usize,
    /// The map.
    pub map: AdjointMap,
    /// Rows (post size).
    pub rows: usize,
    /// Columns (pre size).
    pub cols: usize,
}

/// A learned projection's gradient over a window: `grad = −⟨Σₙ λ_post(n) x(n)ᵀ dt⟩_B`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdjointGradient {
    /// Index in [`AdjointPlan::populations`] of the postsynaptic learner.
    pub post: usize,
    /// What the projection reads (its presynaptic values, after any synaptic filter).
    pub x: BufId,
    /// The weight gradient (`rows × cols` for a dense projection, `rows` for a diagonal one).
    pub grad: BufId,
    /// The bias gradient, if the projection has a bias.
    pub bias_grad: Option<BufId>,
    /// Whether the projection is dense (else diagonal).
    pub dense: bool,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

/// Everything the runtime needs for the adjoint error mode.
#[derive(Clone, Debug, PartialEq)]
pub struct AdjointPlan {
    /// Steps per window: the optimiser steps once per window.
    pub window: usize,
    /// Learners, each after every learner it projects to (λ is computed top-down).
    pub populations: Vec<AdjointPopulation>,
    /// Projections between learners.
    pub links: Vec<AdjointLink>,
    /// Learned projections.
    pub gradients: Vec<AdjointGradient>,
}

impl AdjointPlan {
    /// The buffers recorded every step, each once.
    pub fn recorded(&self) -> Vec<BufId> {
        let mut out: Vec<BufId> = Vec::new();
        let pops = self.populations.iter().flat_map(|p| [p.local_error, p.slope]);
        for b in pops.chain(self.gradients.iter().map(|g| g.x)) {
            if !out.contains(&b) {
                out.push(b);
            }
        }
        out
    }
}

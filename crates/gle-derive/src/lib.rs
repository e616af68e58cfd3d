//! Derivation of LE/GLE dynamics from a checked model, and its discretisation.
//!
//! - [`sym`]: hash-consed symbolic expressions with simplification and reverse-mode
//!   differentiation.
//! - [`neuron`]: a neuron type's membrane equation solved from its mismatch, its prospective
//!   voltage, activation and slope, and the time constants of its error neuron.
//! - [`program`]: the step program, the contract every backend consumes.
//! - [`adjoint`]: what the runtime needs for the offline exact-adjoint error mode.
//! - [`explain`]: the derived equations as text.
//!
//! This crate does no I/O and depends on no backend.

pub mod adjoint;
pub mod explain;
pub mod neuron;
pub mod program;
pub mod sym;

pub use program::{Program, compile};

use gle_syntax::{Diagnostic, Span};

/// A model that checks but uses a construct the derivation does not support.
#[derive(Clone, Debug, PartialEq)]
pub struct DeriveError {
    /// What is unsupported, and where.
    pub message: String,
    /// The construct's span.
    pub span: Span,
}

impl DeriveError {
    /// An error at `span`.
    pub fn new(message: String, span: Span) -> Self {
        DeriveError { message, span }
    }

    /// As a diagnostic (code `E0701`).
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::error("E0701", self.message.clone(), self.span).with_label("cannot be derived")
    }
}

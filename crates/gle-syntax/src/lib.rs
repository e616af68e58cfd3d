//! Parsing of the `.gle` language.
//!
//! [`parse`] turns source text into an [`ast::File`] plus [`Diagnostic`]s. It never panics: a
//! lexical pre-pass ([`scan`]) rejects stray characters, unterminated strings and over-deep
//! nesting, then a pest grammar (`grammar/gle.pest`) parses each declaration separately so that
//! one file reports every broken declaration, not only the first.

pub mod ast;
pub mod diagnostic;
mod parser;
pub mod scan;
pub mod span;

pub use diagnostic::{Diagnostic, Label, Severity, has_errors};
pub use parser::parse;
pub use span::{SourceFile, Span, Spanned};

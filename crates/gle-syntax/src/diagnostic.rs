//! Diagnostics with stable codes, rendered rustc-style or as JSON.

use crate::span::{SourceFile, Span};
use annotate_snippets::{Level, Renderer, Snippet};
use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The model is rejected.
    Error,
    /// The model is accepted but probably not what was meant.
    Warning,
}

/// A secondary span with its own message ("first defined here").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Label {
    /// The annotated source range.
    pub span: Span,
    /// Text shown under the span.
    pub message: String,
}

/// One problem found in a source file: a code from `docs/errors.md`, a message, the primary span,
/// optional secondary labels, notes and a help line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code such as `E0201`, documented in `docs/errors.md`.
    pub code: &'static str,
    /// One-line summary.
    pub message: String,
    /// Where the problem is.
    pub span: Span,
    /// Text shown under the primary span.
    pub label: String,
    /// Further annotated spans.
    pub labels: Vec<Label>,
    /// `= note:` lines.
    pub notes: Vec<String>,
    /// A `= help:` line.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error with `code` and `message` at `span`.
    pub fn error(code: &'static str, message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: String::new(),
            labels: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    /// Sets the text under the primary span.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Adds a secondary span with a message.
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic like rustc: `error[E0001]: …`, `--> file:line:col`, the source excerpt
    /// with the span underlined, then notes and help. No colours.
    pub fn render(&self, file: &SourceFile) -> String {
        let text = file.text();
        let clamp = |s: Span| {
            let start = floor_char_boundary(text, s.start.min(text.len()));
            let end = floor_char_boundary(text, s.end.clamp(start, text.len()));
            start..end
        };
        let level = match self.severity {
            Severity::Error => Level::Error,
            Severity::Warning => Level::Warning,
        };
        let mut snippet = Snippet::source(text)
            .line_start(1)
            .origin(file.name())
            .fold(true)
            .annotation(level.span(clamp(self.span)).label(&self.label));
        // Secondary labels use the warning level: in plain rendering it draws `---` without a
        // level prefix, the way rustc shows secondary spans.
        for label in &self.labels {
            snippet = snippet.annotation(Level::Warning.span(clamp(label.span)).label(&label.message));
        }
        let mut message = level.title(&self.message).id(self.code).snippet(snippet);
        for note in &self.notes {
            message = message.footer(Level::Note.title(note));
        }
        if let Some(help) = &self.help {
            message = message.footer(Level::Help.title(help));
        }
        Renderer::plain().render(message).to_string()
    }

    /// The diagnostic as one JSON object for editors: code, severity, message, file, and the
    /// primary span as byte offsets plus one-based line/column.
    pub fn to_json(&self, file: &SourceFile) -> serde_json::Value {
        let (line, column) = file.line_col(self.span.start);
        let (end_line, end_column) = file.line_col(self.span.end);
        serde_json::json!({
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": file.name(),
            "span": { "start": self.span.start, "end": self.span.end },
            "line": line,
            "column": column,
            "end_line": end_line,
            "end_column": end_column,
            "label": self.label,
            "labels": self.labels,
            "notes": self.notes,
            "help": self.help,
        })
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Whether any diagnostic in `diags` is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

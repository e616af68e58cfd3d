//! A lexical pre-pass over the whole file: reports lexical errors (stray characters, unterminated
//! strings and comments, malformed numbers, over-deep nesting) and finds the declaration
//! boundaries at which the parser restarts, so that one file can report several errors.

use crate::diagnostic::Diagnostic;
use crate::span::Span;

/// Deepest bracket nesting accepted; deeper input is rejected before parsing so that no later
/// recursive pass can exhaust the stack.
pub const MAX_NESTING: usize = 64;
/// Most operators accepted in one declaration, for the same reason.
pub const MAX_OPERATORS: usize = 1024;

/// Keywords that begin a top-level declaration when they are the first word on a line outside
/// any brackets. `learn` and `run` begin one only when followed by `{`.
const DECL_KEYWORDS: &[&str] = &[
    "model",
    "const",
    "fn",
    "neuron",
    "input",
    "dataset",
    "population",
    "connect",
    "energy",
    "rule",
    "learn",
    "run",
];

/// One declaration's byte range, and whether a lexical error inside it makes parsing pointless.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// Byte range of the declaration (up to the next declaration's first keyword).
    pub span: Span,
    /// True when the scan already reported an error inside this chunk.
    pub has_lexical_error: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Tok {
    Word,
    Number,
    Str,
    Open,
    Close,
    Op,
    Other,
}

/// Scans `text`, returning the declaration chunks and any lexical diagnostics.
pub fn scan(text: &str) -> (Vec<Chunk>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    let mut error_at: Vec<usize> = Vec::new();
    let mut ops_in_chunk = 0usize;
    let mut ops_reported = false;
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut prev: Option<Tok> = None;
    let mut line_has_token = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            line_has_token = false;
            i += 1;
            continue;
        }
        if c == b' ' || c == b'\t' || c == b'\r' {
            i += 1;
            continue;
        }
        if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            continue;
        }
        if text[i..].starts_with("/*") {
            match text[i + 2..].find("*/") {
                Some(n) => i += n + 4,
                None => {
                    diags.push(
                        Diagnostic::error("E0003", "unterminated block comment", Span::new(i, i + 2))
                            .with_label("this comment is never closed")
                            .with_help("close it with `*/`"),
                    );
                    error_at.push(i);
                    i = bytes.len();
                }
            }
            continue;
        }
        let first_on_line = !line_has_token;
        line_has_token = true;
        let start = i;
        let tok = if c == b'"' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None | Some(b'\n') => {
                        diags.push(
                            Diagnostic::error("E0002", "unterminated string", Span::new(start, i))
                                .with_label("this string has no closing quote")
                                .with_help("strings end on the line they start; add a `\"`"),
                        );
                        error_at.push(start);
                        break;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let next = text[i + 1..].chars().next();
                        match next {
                            Some('"' | '\\' | 'n' | 't') => i += 2,
                            Some(ch) if ch != '\n' => {
                                let end = i + 1 + ch.len_utf8();
                                diags.push(
                                    Diagnostic::error(
                                        "E0005",
                                        format!("unknown escape `\\{ch}` in string"),
                                        Span::new(i, end),
                                    )
                                    .with_label("not a known escape")
                                    .with_note("known escapes: `\\\"`, `\\\\`, `\\n`, `\\t`"),
                                );
                                error_at.push(i);
                                i = end;
                            }
                            _ => i += 1,
                        }
                    }
                    Some(_) => i += 1,
                }
            }
            Tok::Str
        } else if c.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let mut malformed = false;
            if bytes.get(i) == Some(&b'.') {
                if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i += 1;
                    malformed = true;
                }
            }
            if matches!(bytes.get(i), Some(b'e' | b'E')) {
                let mut j = i + 1;
                if matches!(bytes.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                if bytes.get(j).is_some_and(u8::is_ascii_digit) {
                    i = j;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i = j;
                    malformed = true;
                }
            }
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
                malformed = true;
            }
            if malformed {
                diags.push(
                    Diagnostic::error("E0004", "malformed number", Span::new(start, i))
                        .with_label("not a number")
                        .with_help("numbers look like `3`, `0.25` or `1e-4`"),
                );
                error_at.push(start);
            }
            Tok::Number
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &text[start..i];
            let at_top = stack.is_empty();
            if at_top && first_on_line && DECL_KEYWORDS.contains(&word) {
                let needs_brace = word == "learn" || word == "run";
                let next_is_brace = text[i..].trim_start().starts_with('{');
                if !needs_brace || next_is_brace {
                    starts.push(start);
                    ops_in_chunk = 0;
                    ops_reported = false;
                }
            }
            if (word == "D" || word == "I") && text[i..].trim_start().starts_with('[') {
                ops_in_chunk += 1;
            }
            Tok::Word
        } else if b"{([".contains(&c) {
            i += 1;
            stack.push((c, start));
            if stack.len() > MAX_NESTING {
                diags.push(
                    Diagnostic::error("E0006", "brackets nested too deeply", Span::new(start, i))
                        .with_label(format!("nesting depth {} here", stack.len()))
                        .with_note(format!("at most {MAX_NESTING} levels are accepted")),
                );
                error_at.push(start);
                // Skip the rest of the file: everything after this point is inside the nest.
                i = bytes.len();
            }
            Tok::Open
        } else if b"})]".contains(&c) {
            i += 1;
            stack.pop();
            Tok::Close
        } else if b"+-*/^".contains(&c) {
            i += 1;
            if c == b'-' && bytes.get(i) == Some(&b'>') {
                i += 1;
            } else {
                let negative_literal = c == b'-'
                    && matches!(prev, Some(Tok::Open | Tok::Other) | None)
                    && bytes.get(i).is_some_and(u8::is_ascii_digit);
                if !negative_literal {
                    ops_in_chunk += 1;
                }
            }
            Tok::Op
        } else if b",:=.".contains(&c) {
            i += 1;
            Tok::Other
        } else {
            let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
            i += ch.len_utf8();
            let mut d = Diagnostic::error(
                "E0001",
                format!("unexpected character `{}`", ch.escape_debug()),
                Span::new(start, i),
            )
            .with_label("not part of the .gle language");
            d = match ch {
                ';' => d.with_help("statements end at the end of the line; remove the `;`"),
                '#' => d.with_help("comments start with `//`"),
                '\'' => d.with_help("strings use double quotes"),
                _ => d,
            };
            diags.push(d);
            error_at.push(start);
            Tok::Other
        };
        if ops_in_chunk > MAX_OPERATORS && !ops_reported {
            ops_reported = true;
            diags.push(
                Diagnostic::error("E0006", "declaration has too many operators", Span::new(start, i))
                    .with_label(format!("operator number {} here", MAX_OPERATORS + 1))
                    .with_note(format!(
                        "at most {MAX_OPERATORS} operators are accepted in one declaration"
                    ))
                    .with_help("split the expression with `let` or `const`"),
            );
            error_at.push(start);
        }
        prev = Some(tok);
    }
    if starts.first() != Some(&0) {
        // Text before the first declaration keyword (even if only comments) forms its own chunk;
        // it is dropped below when it holds no tokens.
        starts.insert(0, 0);
    }
    let mut chunks = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(text.len());
        chunks.push(Chunk {
            span: Span::new(s, e),
            has_lexical_error: error_at.iter().any(|&p| s <= p && p < e),
        });
    }
    (chunks, diags)
}

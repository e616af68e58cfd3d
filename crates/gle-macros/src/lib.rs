//! `model!`: compiles a `.gle` model to Rust inside the user's crate.
//!
//! ```ignore
//! gle_macros::model!("models/gle_lagline.gle"); // relative to CARGO_MANIFEST_DIR
//! let mut net = gle_lagline::Model::new()?;
//! net.run_protocol()?;
//! ```
//!
//! The expansion is exactly what `glec emit rust` prints; the crate must also depend on
//! `gle-runtime`. Errors in the model become compile errors at the macro call, rendered as
//! `glec check` renders them (`file:line:col`, excerpt, notes).

use gle_codegen::Source;
use gle_syntax::{SourceFile, has_errors};
use proc_macro::{Delimiter, Span, TokenStream, TokenTree};

/// `model!("path/to/model.gle")` (relative to the crate's `CARGO_MANIFEST_DIR`) or
/// `model! { model name … }` with the source inline: expands to `pub mod <model name>` with
/// the model's `Model`, `State` and `Params` types and its compiled step.
#[proc_macro]
pub fn model(input: TokenStream) -> TokenStream {
    let mut tokens: Vec<TokenTree> = input.clone().into_iter().collect();
    // A literal passed on by `macro_rules!` arrives wrapped in an invisible group.
    while let [TokenTree::Group(g)] = tokens.as_slice()
        && g.delimiter() == Delimiter::None
    {
        tokens = g.stream().into_iter().collect();
    }
    let result = match tokens.as_slice() {
        [TokenTree::Literal(lit)] if lit.to_string().starts_with('"') => from_file(lit),
        [] => Err(error(
            Span::call_site(),
            "expected a path to a .gle file or an inline model",
        )),
        _ => from_inline(input),
    };
    result.unwrap_or_else(|e| e)
}

/// A rendered diagnostic as a compile-error message: rustc already says `error:`, so
/// `error[E0302]: …` becomes `E0302: …`; the excerpt with its `file:line:col` follows.
fn message(rendered: &str) -> String {
    match rendered.strip_prefix("error[").and_then(|rest| rest.split_once("]: ")) {
        Some((code, rest)) => format!("{code}: {rest}"),
        None => rendered.to_string(),
    }
}

/// `compile_error!(message)` at `span`.
fn error(span: Span, message: &str) -> TokenStream {
    syn::Error::new(span.into(), message).to_compile_error().into()
}

fn from_file(lit: &proc_macro::Literal) -> Result<TokenStream, TokenStream> {
    let span = lit.span();
    let path: syn::LitStr = syn::parse(TokenTree::Literal(lit.clone()).into())
        .map_err(|_| error(span, "expected a string literal: the path of a .gle file"))?;
    let path = path.value();
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let full = std::path::Path::new(&root).join(&path);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| error(span, &format!("cannot read model `{}`: {e}", full.display())))?;
    expand(&path, &text, &Source::File(&path), |_| span)
}

/// The inline form: the tokens are laid back out at their own lines and columns, so that
/// diagnostics name the enclosing Rust file's lines and point at the offending token.
fn from_inline(input: TokenStream) -> Result<TokenStream, TokenStream> {
    let mut pieces = Vec::new();
    flatten(input, &mut pieces);
    let file = Span::call_site().file();
    let mut text = String::new();
    let (mut line, mut col) = (1usize, 1usize);
    let mut starts = Vec::with_capacity(pieces.len());
    for (piece, span) in &pieces {
        let (l, c) = (span.line(), span.column());
        if l > line {
            text.extend(std::iter::repeat_n('\n', l - line));
            (line, col) = (l, 1);
        }
        if c > col {
            text.extend(std::iter::repeat_n(' ', c - col));
            col = c;
        } else if c < col && !text.ends_with(['\n', ' ']) {
            // A span from elsewhere (a macro_rules expansion): keep tokens apart.
            text.push(' ');
            col += 1;
        }
        starts.push((text.len(), *span));
        text.push_str(piece);
        match piece.rsplit_once('\n') {
            // A token spanning lines (a multi-line string): continue after its last line.
            Some((before, after)) => {
                line += before.matches('\n').count() + 1;
                col = after.chars().count() + 1;
            }
            None => col += piece.chars().count(),
        }
    }
    let at = |offset: usize| {
        starts
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset)
            .map_or(Span::call_site(), |(_, span)| *span)
    };
    expand(&file, &text, &Source::Inline(&text), at)
}

/// Every leaf token with its span; groups contribute their delimiters.
fn flatten(stream: TokenStream, out: &mut Vec<(String, Span)>) {
    for tt in stream {
        match tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                if !open.is_empty() {
                    out.push((open.into(), g.span_open()));
                }
                flatten(g.stream(), out);
                if !close.is_empty() {
                    out.push((close.into(), g.span_close()));
                }
            }
            other => {
                let span = other.span();
                out.push((span.source_text().unwrap_or_else(|| other.to_string()), span));
            }
        }
    }
}

/// Checks, derives and generates; errors become `compile_error!` at `span_of(offset)`.
fn expand(
    name: &str,
    text: &str,
    source: &Source,
    span_of: impl Fn(usize) -> Span,
) -> Result<TokenStream, TokenStream> {
    let file = SourceFile::new(name, text);
    let (model, diags) = gle_ir::check_source(name, text);
    let model = match model {
        Some(m) if !has_errors(&diags) => m,
        _ => {
            let first = diags.iter().find(|d| d.severity == gle_syntax::Severity::Error);
            let span = first.map_or(Span::call_site(), |d| span_of(d.span.start));
            let shown: Vec<String> = diags.iter().map(|d| message(&d.render(&file))).collect();
            return Err(error(span, &shown.join("\n")));
        }
    };
    let program = gle_derive::compile(&model).map_err(|e| {
        let d = e.to_diagnostic();
        error(span_of(d.span.start), &message(&d.render(&file)))
    })?;
    let code = gle_codegen::emit_unformatted(&model, &program, source).map_err(|e| error(span_of(0), &e))?;
    code.parse::<TokenStream>().map_err(|e| {
        error(
            span_of(0),
            &format!("internal error: generated code does not parse: {e}"),
        )
    })
}

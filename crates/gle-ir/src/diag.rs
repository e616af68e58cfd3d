//! Constructors for the diagnostics the checker emits more than once.

use crate::suggest::closest;
use gle_syntax::ast::{Arg, Ident};
use gle_syntax::{Diagnostic, Span};

/// E0414: a number was expected.
pub fn expected_number(span: Span, found: &str) -> Diagnostic {
    Diagnostic::error("E0414", format!("expected a number, found {found}"), span).with_label("expected a number")
}

/// E0200: an unknown name, with a suggestion among `candidates`.
pub fn unknown_name<'a>(
    what: &str,
    name: &str,
    span: Span,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Diagnostic {
    let d = Diagnostic::error("E0200", format!("unknown {what} `{name}`"), span)
        .with_label(format!("no {what} with this name"));
    match closest(name, candidates) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d,
    }
}

/// E0200: `owner` has no member `name` of this kind, with a suggestion among `candidates`.
pub fn unknown_member<'a>(
    kind: &str,
    name: &str,
    owner: &str,
    span: Span,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Diagnostic {
    let d = Diagnostic::error("E0200", format!("{owner} has no {kind} `{name}`"), span)
        .with_label(format!("not a {kind} of {owner}"));
    match closest(name, candidates) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d,
    }
}

/// E0201: a name defined twice.
pub fn duplicate(what: &str, name: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::error("E0201", format!("{what} `{name}` is defined more than once"), span)
        .with_label("defined again here")
        .with_secondary(first, "first defined here")
}

/// E0211: checks that a call of `func` has exactly `n` positional arguments.
pub fn expect_args(func: &Ident, args: &[Arg], n: usize) -> Result<(), Diagnostic> {
    if args.len() != n {
        return Err(wrong_arity(func, args.len(), n));
    }
    Ok(())
}

/// E0211: wrong number of arguments.
pub fn wrong_arity(func: &Ident, got: usize, want: usize) -> Diagnostic {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    Diagnostic::error(
        "E0211",
        format!(
            "`{}` takes {want} argument{}, but {got} {} given",
            func.node,
            plural(want),
            if got == 1 { "was" } else { "were" }
        ),
        func.span,
    )
    .with_label(format!("expected {want} argument{}", plural(want)))
}

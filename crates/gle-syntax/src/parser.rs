//! The pest parser and the conversion of its parse tree into the [`ast`](crate::ast).

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::scan::scan;
use crate::span::{Span, Spanned};
use pest::Parser as _;
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::sync::LazyLock;

#[derive(pest_derive::Parser)]
#[grammar = "../../../grammar/gle.pest"]
struct GleParser;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
        .op(Op::prefix(Rule::neg))
        .op(Op::infix(Rule::pow, Assoc::Right))
        .op(Op::prefix(Rule::d_op) | Op::prefix(Rule::i_op))
});

/// Parses a whole file. Never panics: returns the declarations that parsed, plus a diagnostic for
/// every lexical or syntax error found (the parser restarts at each declaration keyword).
pub fn parse(text: &str) -> (File, Vec<Diagnostic>) {
    let (chunks, mut diags) = scan(text);
    let mut file = File::default();
    for chunk in chunks {
        if chunk.has_lexical_error {
            continue;
        }
        let src = &text[chunk.span.start..chunk.span.end];
        if GleParser::parse(Rule::trivia_only, src).is_ok() {
            continue;
        }
        match GleParser::parse(Rule::declaration, src) {
            Ok(pairs) => {
                let conv = Converter {
                    offset: chunk.span.start,
                };
                for pair in pairs {
                    if pair.as_rule() != Rule::EOI {
                        match conv.decl(pair) {
                            Ok(d) => file.decls.push(d),
                            Err(d) => diags.push(d),
                        }
                    }
                }
            }
            Err(err) => {
                let detailed = parse_with_detail(src).unwrap_or(err);
                diags.push(syntax_error(&detailed, src, chunk.span.start));
            }
        }
    }
    diags.sort_by_key(|d| d.span.start);
    (file, diags)
}

/// Serialises detailed re-parses: pest's error-detail switch is process-global.
static DETAIL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Parses a declaration that failed again, this time tracking every token pest tried at the
/// furthest position, for a precise "expected …" message. Tracking doubles the cost of parsing,
/// so only failing declarations pay for it. A concurrent parse that sees the switch on merely
/// tracks too; every error message comes from a detailed parse, so messages are deterministic.
fn parse_with_detail(src: &str) -> Option<pest::error::Error<Rule>> {
    let _guard = DETAIL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    pest::set_error_detail(true);
    let result = GleParser::parse(Rule::declaration, src);
    pest::set_error_detail(false);
    result.err()
}

/// Converts a pest error into a spanned `E0100` diagnostic naming what was expected at the
/// furthest position the parser reached (literal tokens such as `->` included).
fn syntax_error(err: &pest::error::Error<Rule>, src: &str, offset: usize) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let mut pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<String> = Vec::new();
    match err.parse_attempts() {
        Some(attempts) => {
            pos = attempts.max_position;
            // Literal tokens display as themselves. Tokens that can start an expression and
            // operator symbols are summarised; comment openers are always allowed and omitted.
            let mut tokens: Vec<String> = attempts.expected_tokens().iter().map(ToString::to_string).collect();
            tokens.retain(|t| t != "//" && t != "/*" && !t.contains("..") && !t.chars().any(char::is_whitespace));
            if tokens.iter().any(|t| matches!(t.as_str(), "\"" | "(" | "_")) {
                tokens.retain(|t| !matches!(t.as_str(), "\"" | "(" | "[" | "_" | "D" | "I" | "-"));
                expected.push("an expression".into());
            }
            if tokens.iter().any(|t| matches!(t.as_str(), "+" | "*" | "/" | "^")) {
                tokens.retain(|t| !matches!(t.as_str(), "+" | "*" | "/" | "^" | "-"));
                expected.push("an operator".into());
            }
            expected.extend(tokens.into_iter().map(|t| format!("`{t}`")));
            if expected.is_empty()
                && let ErrorVariant::ParsingError { positives, .. } = &err.variant
            {
                expected.extend(positives.iter().filter_map(|r| describe(*r)).map(str::to_string));
            }
        }
        None => {
            if let ErrorVariant::ParsingError { positives, .. } = &err.variant {
                expected.extend(positives.iter().filter_map(|r| describe(*r)).map(str::to_string));
            }
        }
    }
    expected.sort_unstable();
    expected.dedup();
    if expected.iter().any(|e| e == "an expression") {
        expected.retain(|e| {
            !matches!(
                e.as_str(),
                "a name" | "a number" | "a string" | "`(`" | "`[`" | "`-`" | "`D`" | "`I`"
            )
        });
    }
    let found = found_at(src, pos);
    if found.1 == 0 {
        // At the end of the declaration: point just past its last token, not at the next line.
        pos = content_end(src.get(..pos).unwrap_or(src));
    }
    let end = pos + found.1;
    let message = if expected.is_empty() {
        format!("unexpected {}", found.0)
    } else {
        format!("expected {}, found {}", join_or(&expected), found.0)
    };
    let label = if expected.is_empty() {
        "unexpected here".to_string()
    } else {
        format!("expected {}", join_or(&expected))
    };
    let mut d = Diagnostic::error("E0100", message, Span::new(offset + pos, offset + end)).with_label(label);
    if expected.iter().any(|e| e == "a new declaration") {
        d = d.with_note(
            "a declaration starts with one of: model, const, fn, neuron, input, dataset, population, connect, energy, rule, learn, run",
        );
    }
    d
}

/// What the text at `pos` looks like, for "found …", and the length of that token.
fn found_at(src: &str, pos: usize) -> (String, usize) {
    let rest = src.get(pos..).unwrap_or("");
    let rest_trim = rest.trim_end();
    if rest_trim.is_empty() {
        return ("end of declaration".to_string(), 0);
    }
    let first = rest.chars().next().unwrap_or(' ');
    let len = if first.is_ascii_alphanumeric() || first == '_' {
        rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len())
    } else {
        first.len_utf8()
    };
    let tok = &rest[..len];
    if tok.trim().is_empty() {
        ("a line break".to_string(), len)
    } else {
        (format!("`{tok}`"), len)
    }
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// A readable name for a grammar rule in "expected …" messages; `None` hides the rule.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident | Rule::path => "a name",
        Rule::number => "a number",
        Rule::string => "a string",
        Rule::expr | Rule::call | Rule::list | Rule::neg | Rule::d_op | Rule::i_op => "an expression",
        Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::pow => "an operator",
        Rule::args => "`(`",
        Rule::arg => "an argument",
        Rule::size => "`[size]`",
        Rule::EOI => "a new declaration",
        Rule::kw_model
        | Rule::kw_const
        | Rule::kw_fn
        | Rule::kw_neuron
        | Rule::kw_input
        | Rule::kw_dataset
        | Rule::kw_population
        | Rule::kw_connect
        | Rule::kw_energy
        | Rule::kw_rule
        | Rule::kw_run => "a new declaration",
        Rule::kw_learn | Rule::learn_mod | Rule::learn_mark => "`learn`",
        Rule::kw_param | Rule::param_item => "`param`",
        Rule::kw_state | Rule::state_item => "`state`",
        Rule::kw_let | Rule::let_item => "`let`",
        Rule::kw_rate | Rule::rate_item => "`rate`",
        Rule::kw_mismatch | Rule::mismatch_item => "`mismatch`",
        Rule::kw_compartment | Rule::compartment_item => "`compartment`",
        Rule::kw_group | Rule::group_item => "`group`",
        Rule::kw_fixed | Rule::fixed_mod => "`fixed`",
        Rule::kw_feedback | Rule::feedback_mod => "`feedback`",
        Rule::kw_phase | Rule::phase_item => "`phase`",
        Rule::kw_repeat | Rule::repeat_item => "`repeat`",
        Rule::kw_record | Rule::record_item => "`record`",
        Rule::kw_every => "`every`",
        Rule::kw_field | Rule::field_item => "`field`",
        Rule::setting => "a setting",
        Rule::pop_args => "`(`",
        Rule::pop_body => "`{`",
        Rule::pop_value => "`name: value`",
        Rule::endpoint => "a population",
        Rule::rule_update => "an update `dW = …`",
        Rule::fn_params => "a parameter name",
        _ => return None,
    })
}

/// Converts pest pairs of one declaration into AST nodes, shifting spans by `offset`.
struct Converter {
    offset: usize,
}

type Conv<T> = Result<T, Diagnostic>;

/// The next child of a pair whose grammar rule guarantees it exists.
fn child<'i>(pairs: &mut Pairs<'i, Rule>) -> Pair<'i, Rule> {
    pairs.next().expect("the grammar guarantees this child")
}

impl Converter {
    /// The pair's span without the trailing whitespace and comments pest includes after optional
    /// or repeated tails.
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(s.start(), s.start() + content_end(s.as_str())).shifted(self.offset)
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Spanned::new(pair.as_str().to_string(), self.span(&pair))
    }

    /// Skips the keyword child every declaration starts with.
    fn body<'i>(&self, pair: Pair<'i, Rule>) -> Pairs<'i, Rule> {
        let mut inner = pair.into_inner();
        if inner.peek().is_some_and(|p| is_keyword(p.as_rule())) {
            inner.next();
        }
        inner
    }

    fn decl(&self, pair: Pair<Rule>) -> Conv<Decl> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut it = self.body(pair);
        Ok(match rule {
            Rule::model_decl => Decl::Model(self.ident(child(&mut it))),
            Rule::const_decl => Decl::Const(ConstDecl {
                name: self.ident(child(&mut it)),
                value: self.expr(child(&mut it))?,
                span,
            }),
            Rule::fn_decl => {
                let name = self.ident(child(&mut it));
                let params = child(&mut it).into_inner().map(|p| self.ident(p)).collect();
                Decl::Fn(FnDecl {
                    name,
                    params,
                    body: self.expr(child(&mut it))?,
                    span,
                })
            }
            Rule::neuron_decl => {
                let name = self.ident(child(&mut it));
                let items = it.map(|p| self.neuron_item(p)).collect::<Conv<_>>()?;
                Decl::Neuron(NeuronDecl { name, items, span })
            }
            Rule::input_decl => Decl::Input(InputDecl {
                name: self.ident(child(&mut it)),
                size: self.size(child(&mut it))?,
                source: self.expr(child(&mut it))?,
                span,
            }),
            Rule::dataset_decl => {
                let name = self.ident(child(&mut it));
                let mut fields = Vec::new();
                let mut settings = Vec::new();
                for p in it {
                    if p.as_rule() == Rule::field_item {
                        let mut f = self.body(p);
                        let n = self.ident(child(&mut f));
                        fields.push((n, self.expr(child(&mut f))?));
                    } else {
                        settings.push(self.setting(p)?);
                    }
                }
                Decl::Dataset(DatasetDecl {
                    name,
                    fields,
                    settings,
                    span,
                })
            }
            Rule::population_decl => {
                let name = self.ident(child(&mut it));
                let size = self.size(child(&mut it))?;
                let neuron = self.ident(child(&mut it));
                let mut values = Vec::new();
                let mut groups = Vec::new();
                for p in it {
                    for q in p.into_inner() {
                        match q.as_rule() {
                            Rule::pop_value => values.push(self.pop_value(q)?),
                            Rule::group_item => {
                                let gspan = self.span(&q);
                                let mut g = self.body(q);
                                let count = self.expr(child(&mut g))?;
                                let vals = g.map(|v| self.pop_value(v)).collect::<Conv<_>>()?;
                                groups.push(Group {
                                    count,
                                    values: vals,
                                    span: gspan,
                                });
                            }
                            _ => {}
                        }
                    }
                }
                Decl::Population(PopulationDecl {
                    name,
                    size,
                    neuron,
                    values,
                    groups,
                    span,
                })
            }
            Rule::connect_decl => {
                let mut name = None;
                if it.peek().is_some_and(|p| p.as_rule() == Rule::ident) {
                    name = Some(self.ident(child(&mut it)));
                }
                let pre = self.endpoint(child(&mut it));
                let post = self.endpoint(child(&mut it));
                let kind = self.expr(child(&mut it))?;
                let mut modifiers = Vec::new();
                for m in it {
                    let mspan = self.span(&m);
                    modifiers.push(match m.as_rule() {
                        Rule::fixed_mod => Modifier::Fixed(mspan),
                        Rule::learn_mod => {
                            let mut args = Vec::new();
                            for a in self.body(m) {
                                args = self.args(a)?;
                            }
                            Modifier::Learn { args, span: mspan }
                        }
                        _ => Modifier::Feedback(self.expr(child(&mut self.body(m)))?),
                    });
                }
                Decl::Connect(ConnectDecl {
                    name,
                    pre,
                    post,
                    kind,
                    modifiers,
                    span,
                })
            }
            Rule::energy_decl => {
                let mut name = None;
                if it.peek().is_some_and(|p| p.as_rule() == Rule::ident) {
                    name = Some(self.ident(child(&mut it)));
                }
                Decl::Energy(EnergyDecl {
                    name,
                    value: self.expr(child(&mut it))?,
                    span,
                })
            }
            Rule::rule_decl => {
                let projection = self.ident(child(&mut it));
                let mut updates = Vec::new();
                let mut settings = Vec::new();
                for p in it {
                    if p.as_rule() == Rule::rule_update {
                        let mut u = p.into_inner();
                        let n = self.ident(child(&mut u));
                        updates.push((n, self.expr(child(&mut u))?));
                    } else {
                        settings.push(self.setting(p)?);
                    }
                }
                Decl::Rule(RuleDecl {
                    projection,
                    updates,
                    settings,
                    span,
                })
            }
            Rule::learn_decl => Decl::Learn(Block {
                settings: it.map(|p| self.setting(p)).collect::<Conv<_>>()?,
                span,
            }),
            _ => Decl::Run(RunDecl {
                items: it.map(|p| self.run_item(p)).collect::<Conv<_>>()?,
                span,
            }),
        })
    }

    fn neuron_item(&self, pair: Pair<Rule>) -> Conv<NeuronItem> {
        let rule = pair.as_rule();
        if rule == Rule::setting {
            return Ok(NeuronItem::Setting(self.setting(pair)?));
        }
        let mut it = self.body(pair);
        let name = self.ident(child(&mut it));
        Ok(match rule {
            Rule::param_item => NeuronItem::Param {
                name,
                default: it.next().map(|p| self.expr(p)).transpose()?,
            },
            Rule::state_item => NeuronItem::State(name),
            Rule::let_item => NeuronItem::Let {
                name,
                value: self.expr(child(&mut it))?,
            },
            Rule::rate_item => NeuronItem::Rate {
                name,
                value: self.expr(child(&mut it))?,
            },
            Rule::mismatch_item => NeuronItem::Mismatch {
                name,
                value: self.expr(child(&mut it))?,
            },
            _ => NeuronItem::Compartment {
                name,
                settings: it.map(|p| self.setting(p)).collect::<Conv<_>>()?,
            },
        })
    }

    fn run_item(&self, pair: Pair<Rule>) -> Conv<RunItem> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        if rule == Rule::setting {
            return Ok(RunItem::Setting(self.setting(pair)?));
        }
        let mut it = self.body(pair);
        Ok(match rule {
            Rule::phase_item => RunItem::Phase {
                name: self.ident(child(&mut it)),
                items: it.map(|p| self.run_item(p)).collect::<Conv<_>>()?,
                span,
            },
            Rule::repeat_item => RunItem::Repeat {
                count: self.expr(child(&mut it))?,
                items: it.map(|p| self.run_item(p)).collect::<Conv<_>>()?,
                span,
            },
            _ => {
                let mut targets = Vec::new();
                let mut every = None;
                while let Some(p) = it.next() {
                    if p.as_rule() == Rule::kw_every {
                        every = Some(self.expr(child(&mut it))?);
                    } else {
                        targets.push(self.expr(p)?);
                    }
                }
                RunItem::Record { targets, every, span }
            }
        })
    }

    fn setting(&self, pair: Pair<Rule>) -> Conv<Setting> {
        let span = self.span(&pair);
        let mut it = pair.into_inner();
        let key = self.ident(child(&mut it));
        let values = it.map(|p| self.expr(p)).collect::<Conv<_>>()?;
        Ok(Setting { key, values, span })
    }

    fn size(&self, pair: Pair<Rule>) -> Conv<Expr> {
        self.expr(child(&mut pair.into_inner()))
    }

    fn pop_value(&self, pair: Pair<Rule>) -> Conv<PopValue> {
        let mut it = pair.into_inner();
        let name = self.ident(child(&mut it));
        let value = self.expr(child(&mut it))?;
        let mut learn = None;
        let mut learn_args = Vec::new();
        if let Some(mark) = it.next() {
            learn = Some(self.span(&mark));
            for a in self.body(mark) {
                learn_args = self.args(a)?;
            }
        }
        Ok(PopValue {
            name,
            value,
            learn,
            learn_args,
        })
    }

    fn endpoint(&self, pair: Pair<Rule>) -> Endpoint {
        let span = self.span(&pair);
        let mut it = pair.into_inner();
        let node = self.ident(child(&mut it));
        let member = it.next().map(|p| self.ident(p));
        Endpoint { node, member, span }
    }

    fn args(&self, pair: Pair<Rule>) -> Conv<Vec<Arg>> {
        pair.into_inner()
            .map(|a| {
                let mut it = a.into_inner();
                let first = child(&mut it);
                Ok(match it.next() {
                    Some(value) => Arg {
                        name: Some(self.ident(first)),
                        value: self.expr(value)?,
                    },
                    None => Arg {
                        name: None,
                        value: self.expr(first)?,
                    },
                })
            })
            .collect()
    }

    fn expr(&self, pair: Pair<Rule>) -> Conv<Expr> {
        PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, rhs| {
                let rhs = rhs?;
                let span = self.span(&op).to(rhs.span);
                let kind = match op.as_rule() {
                    Rule::neg => ExprKind::Neg(Box::new(rhs)),
                    rule => {
                        let tau = Box::new(self.expr(child(&mut op.into_inner()))?);
                        if rule == Rule::d_op {
                            ExprKind::D {
                                tau,
                                arg: Box::new(rhs),
                            }
                        } else {
                            ExprKind::I {
                                tau,
                                arg: Box::new(rhs),
                            }
                        }
                    }
                };
                Ok(Spanned::new(kind, span))
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let op = match op.as_rule() {
                    Rule::add => BinOp::Add,
                    Rule::sub => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    Rule::div => BinOp::Div,
                    _ => BinOp::Pow,
                };
                let span = lhs.span.to(rhs.span);
                Ok(Spanned::new(
                    ExprKind::Binary {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    span,
                ))
            })
            .parse(pair.into_inner())
    }

    fn primary(&self, pair: Pair<Rule>) -> Conv<Expr> {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::number => {
                let v: f64 = pair.as_str().parse().unwrap_or(f64::INFINITY);
                if !v.is_finite() {
                    return Err(Diagnostic::error("E0007", "number literal out of range", span)
                        .with_label("too large for a 64-bit float"));
                }
                ExprKind::Number(v)
            }
            Rule::string => ExprKind::Str(unescape(child(&mut pair.into_inner()).as_str())),
            Rule::path => ExprKind::Path(pair.into_inner().map(|p| self.ident(p)).collect()),
            Rule::call => {
                let mut it = pair.into_inner();
                let func = self.ident(child(&mut it));
                ExprKind::Call {
                    func,
                    args: self.args(child(&mut it))?,
                }
            }
            Rule::list => ExprKind::List(pair.into_inner().map(|p| self.expr(p)).collect::<Conv<_>>()?),
            _ => return self.expr(pair),
        };
        Ok(Spanned::new(kind, span))
    }
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_model
            | Rule::kw_neuron
            | Rule::kw_fn
            | Rule::kw_const
            | Rule::kw_input
            | Rule::kw_dataset
            | Rule::kw_population
            | Rule::kw_connect
            | Rule::kw_energy
            | Rule::kw_rule
            | Rule::kw_learn
            | Rule::kw_run
            | Rule::kw_param
            | Rule::kw_state
            | Rule::kw_let
            | Rule::kw_rate
            | Rule::kw_mismatch
            | Rule::kw_compartment
            | Rule::kw_group
            | Rule::kw_fixed
            | Rule::kw_feedback
            | Rule::kw_phase
            | Rule::kw_repeat
            | Rule::kw_record
            | Rule::kw_field
    )
}

/// Byte length of `s` up to the end of its last character that is not whitespace or comment.
fn content_end(s: &str) -> usize {
    let b = s.as_bytes();
    let (mut i, mut end, mut in_str) = (0, 0, false);
    while i < b.len() {
        if in_str {
            match b[i] {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
            i += 1;
            end = i;
        } else if s[i..].starts_with("//") {
            i = s[i..].find('\n').map_or(b.len(), |n| i + n);
        } else if s[i..].starts_with("/*") {
            i = s[i + 2..].find("*/").map_or(b.len(), |n| i + n + 4);
        } else {
            if b[i] == b'"' {
                in_str = true;
            }
            if !b[i].is_ascii_whitespace() {
                end = i + 1;
            }
            i += 1;
        }
    }
    // Never split a multi-byte character.
    while end < b.len() && !s.is_char_boundary(end) {
        end += 1;
    }
    end
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

//! Semantic analysis: from the AST of one file to a checked [`Model`], or diagnostics.
//!
//! Every declaration is checked even after an earlier one failed, so one run reports as many
//! independent errors as possible. A declaration that refers to a broken one is skipped silently
//! (its own error was already reported).

use crate::builtins::{Builtin, is_reserved};
use crate::diag;
use crate::eval::{self, NameLookup, eval_count, eval_num};
use crate::ir::*;
use crate::resolve::{
    NeuronScope, Resolver, RuleScope, Scope, bind, filter_time_constant, is_poisoned, neuron_member, visit,
};
use crate::suggest::closest;
use crate::symbols::{SymKind, Symbols};
use gle_syntax::ast::{self, Arg, Decl, ExprKind, Ident, Setting};
use gle_syntax::{Diagnostic, Span};
use std::cell::RefCell;
use std::collections::HashMap;

/// Checks a parsed file. Returns the model when there are no errors, and all diagnostics.
/// `fallback_name` names the model when the file has no `model` declaration.
pub fn check(file: &ast::File, fallback_name: &str) -> (Option<Model>, Vec<Diagnostic>) {
    check_with(file, fallback_name, &[])
}

/// Like [`check`], with values that replace named constants and the run settings `dt`,
/// `batch` and `seed` before anything is evaluated (`glec run --set beta=0.1`). Every value
/// derived from them (a learning rate written `1e-6 / beta`) follows.
pub fn check_with(
    file: &ast::File,
    fallback_name: &str,
    overrides: &[(String, f64)],
) -> (Option<Model>, Vec<Diagnostic>) {
    let mut c = Checker {
        overrides: overrides.to_vec(),
        ..Checker::default()
    };
    let model = c.run(file, fallback_name);
    let mut diags: Vec<Diagnostic> = c.diags.into_iter().filter(|d| !is_poisoned(d)).collect();
    diags.sort_by_key(|d| d.span.start);
    let model = if gle_syntax::has_errors(&diags) { None } else { model };
    (model, diags)
}

/// Stack for the front end's recursive passes. The scanner bounds nesting and operator counts
/// (see `gle_syntax::scan`), so expression trees are at most about a thousand levels deep; this
/// leaves room for that depth even in unoptimised builds. The memory is reserved, not committed.
const FRONT_END_STACK: usize = 256 << 20;

/// Parses and checks source text in one go, on a thread with a stack large enough for the
/// deepest expression the scanner admits.
pub fn check_source(name: &str, text: &str) -> (Option<Model>, Vec<Diagnostic>) {
    check_source_with(name, text, &[])
}

/// The largest seed an override can carry exactly (overrides are `f64`).
pub const MAX_SEED: u64 = 1 << 53;

/// What an override's value breaks when `name` is a run setting (`dt`, `batch`, `seed`), if
/// anything; constants take any number. The checker ignores overrides that break their rule;
/// the CLI reports them.
pub fn override_problem(name: &str, value: f64) -> Option<&'static str> {
    let whole = value.fract() == 0.0;
    match name {
        "dt" if value <= 0.0 => Some("the time step `dt` must be positive"),
        "batch" if !(whole && (1.0..=1e9).contains(&value)) => {
            Some("`batch` must be a whole number from 1 to 1,000,000,000")
        }
        "seed" if !(whole && (0.0..=MAX_SEED as f64).contains(&value)) => Some(SEED_RULE),
        _ => None,
    }
}

/// The rule [`override_problem`] gives for seeds.
pub const SEED_RULE: &str = "`seed` must be a whole number from 0 to 2⁵³";

/// [`check_source`] with `--set` overrides (see [`check_with`]).
pub fn check_source_with(name: &str, text: &str, overrides: &[(String, f64)]) -> (Option<Model>, Vec<Diagnostic>) {
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("glec-front-end".into())
            .stack_size(FRONT_END_STACK)
            .spawn_scoped(scope, || check_source_here(name, text, overrides))
        {
            Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => check_source_here(name, text, overrides),
        }
    })
}

fn check_source_here(name: &str, text: &str, overrides: &[(String, f64)]) -> (Option<Model>, Vec<Diagnostic>) {
    let (file, mut diags) = gle_syntax::parse(text);
    if gle_syntax::has_errors(&diags) {
        // Declarations that failed to parse are missing from the AST; checking the rest would
        // report their absence as further, misleading errors.
        return (None, diags);
    }
    let stem = std::path::Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let (model, more) = check_with(&file, stem, overrides);
    diags.extend(more);
    diags.sort_by_key(|d| d.span.start);
    let model = if gle_syntax::has_errors(&diags) { None } else { model };
    (model, diags)
}

#[derive(Default)]
struct Checker {
    diags: Vec<Diagnostic>,
    symbols: Symbols,
    overrides: Vec<(String, f64)>,
}

/// Constant lookup: model constants (evaluated lazily, cycles reported), `dt` where known.
struct Consts<'a> {
    decls: Vec<&'a ast::ConstDecl>,
    symbols: &'a Symbols,
    /// Value of each constant evaluated so far (`Err` when its definition failed).
    values: RefCell<Vec<Option<Result<f64, ()>>>>,
    dt: Option<f64>,
}

impl NameLookup for Consts<'_> {
    fn lookup(&self, name: &str, span: Span) -> Result<Option<f64>, Diagnostic> {
        if name == "dt" {
            return match self.dt {
                Some(dt) => Ok(Some(dt)),
                None => Err(Diagnostic::error("E0414", "`dt` is not known here", span)
                    .with_label("`dt` used here")
                    .with_note("`dt` may be used in populations, projections, `learn` and `run`, not in `const`")),
            };
        }
        let Some(sym) = self.symbols.get(name).filter(|s| s.kind == SymKind::Const) else {
            return Ok(None);
        };
        self.value(sym.index, span).map(Some)
    }

    fn not_constant(&self, name: &str, span: Span) -> Diagnostic {
        match self.symbols.get(name) {
            Some(s) => Diagnostic::error(
                "E0414",
                format!("expected a number, but `{name}` is {}", s.kind.article()),
                span,
            )
            .with_label("not a constant")
            .with_secondary(s.span, "defined here"),
            None if name.contains('.') => {
                Diagnostic::error("E0414", format!("expected a number, found `{name}`"), span)
                    .with_label("not a constant")
            }
            None => diag::unknown_name("constant", name, span, self.symbols.names_of(SymKind::Const)),
        }
    }
}

impl Consts<'_> {
    /// The value of constant `index`, which must be defined before the expression using it
    /// (constants are evaluated in declaration order, so no cycle can arise).
    fn value(&self, index: usize, use_span: Span) -> Result<f64, Diagnostic> {
        match self.values.borrow().get(index) {
            Some(Some(v)) => v.map_err(|()| Diagnostic::error("E0000", "", use_span)),
            _ => {
                let d = self.decls[index];
                Err(Diagnostic::error(
                    "E0214",
                    format!("constant `{}` is used before its definition", d.name.node),
                    use_span,
                )
                .with_label("used here")
                .with_secondary(d.name.span, "defined later here")
                .with_help("constants are evaluated in order; move the definition up"))
            }
        }
    }
}

/// A neuron type's declaration order info needed by later checks.
struct Decls<'a> {
    consts: Vec<&'a ast::ConstDecl>,
    fns: Vec<&'a ast::FnDecl>,
    neurons: Vec<&'a ast::NeuronDecl>,
    inputs: Vec<&'a ast::InputDecl>,
    datasets: Vec<&'a ast::DatasetDecl>,
    pops: Vec<&'a ast::PopulationDecl>,
    connects: Vec<&'a ast::ConnectDecl>,
    energy: Option<&'a ast::EnergyDecl>,
    rules: Vec<&'a ast::RuleDecl>,
    learn: Option<&'a ast::Block>,
    run: Option<&'a ast::RunDecl>,
    model: Option<&'a Ident>,
}

/// A parameter value as written: the initialiser, the span of a `learn` mark, the value's span.
type Given = Option<(Init, Option<(Span, f64)>, Span)>;

/// A projection's name as used in symbols: explicit, or `pre_post`.
fn projection_name(c: &ast::ConnectDecl) -> (String, Span) {
    match &c.name {
        Some(n) => (n.node.clone(), n.span),
        None => (
            format!("{}_{}", c.pre.node.node, c.post.node.node),
            c.pre.span.to(c.post.span),
        ),
    }
}

impl Checker {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// The override of run setting `name`, unless it breaks [`override_problem`]'s rule.
    fn valid_override(&self, name: &str) -> Option<f64> {
        self.override_of(name).filter(|v| override_problem(name, *v).is_none())
    }

    fn override_of(&self, name: &str) -> Option<f64> {
        self.overrides.iter().rev().find(|(n, _)| n == name).map(|o| o.1)
    }

    fn ok<T>(&mut self, r: Result<T, Diagnostic>) -> Option<T> {
        r.map_err(|d| self.err(d)).ok()
    }

    fn declare(&mut self, name: &Ident, kind: SymKind) -> bool {
        self.declare_str(&name.node, name.span, kind)
    }

    fn declare_str(&mut self, name: &str, span: Span, kind: SymKind) -> bool {
        if is_reserved(name) {
            self.err(
                Diagnostic::error(
                    "E0202",
                    format!("`{name}` is a built-in name and cannot be redefined"),
                    span,
                )
                .with_label("reserved name")
                .with_help("choose another name"),
            );
            return false;
        }
        match self.symbols.insert(name, kind, span) {
            Ok(_) => true,
            Err(first) => {
                self.err(diag::duplicate(kind.name(), name, span, first.span));
                false
            }
        }
    }

    fn single<'a, T>(
        &mut self,
        slot: &mut Option<&'a T>,
        item: &'a T,
        what: &str,
        span: Span,
        first: impl Fn(&T) -> Span,
    ) {
        match slot {
            Some(prev) => {
                let d = Diagnostic::error("E0201", format!("a model has at most one {what}"), span)
                    .with_label(format!("second {what}"))
                    .with_secondary(first(prev), format!("first {what} here"));
                self.err(d);
            }
            None => *slot = Some(item),
        }
    }

    fn collect<'a>(&mut self, file: &'a ast::File) -> Decls<'a> {
        let mut d = Decls {
            consts: vec![],
            fns: vec![],
            neurons: vec![],
            inputs: vec![],
            datasets: vec![],
            pops: vec![],
            connects: vec![],
            energy: None,
            rules: vec![],
            learn: None,
            run: None,
            model: None,
        };
        for decl in &file.decls {
            match decl {
                Decl::Model(n) => self.single(&mut d.model, n, "`model` declaration", n.span, |p| p.span),
                Decl::Const(c) => {
                    if self.declare(&c.name, SymKind::Const) {
                        d.consts.push(c);
                    }
                }
                Decl::Fn(f) => {
                    if self.declare(&f.name, SymKind::Function) {
                        d.fns.push(f);
                    }
                }
                Decl::Neuron(n) => {
                    if self.declare(&n.name, SymKind::Neuron) {
                        d.neurons.push(n);
                    }
                }
                Decl::Input(i) => {
                    if self.declare(&i.name, SymKind::Input) {
                        d.inputs.push(i);
                    }
                }
                Decl::Dataset(s) => {
                    if self.declare(&s.name, SymKind::Dataset) {
                        d.datasets.push(s);
                    }
                }
                Decl::Population(p) => {
                    if self.declare(&p.name, SymKind::Population) {
                        d.pops.push(p);
                    }
                }
                Decl::Connect(c) => {
                    let (name, span) = projection_name(c);
                    if self.declare_str(&name, span, SymKind::Projection) {
                        d.connects.push(c);
                    }
                }
                Decl::Energy(e) => self.single(&mut d.energy, e, "`energy`", e.span, |p| p.span),
                Decl::Rule(r) => d.rules.push(r),
                Decl::Learn(b) => self.single(&mut d.learn, b, "`learn` block", b.span, |p| p.span),
                Decl::Run(r) => self.single(&mut d.run, r, "`run` block", r.span, |p| p.span),
            }
        }
        d
    }

    fn run(&mut self, file: &ast::File, fallback_name: &str) -> Option<Model> {
        let d = self.collect(file);
        let symbols = std::mem::take(&mut self.symbols);
        let mut consts = Consts {
            decls: d.consts.clone(),
            symbols: &symbols,
            values: RefCell::new(vec![None; d.consts.len()]),
            dt: None,
        };
        let mut const_values: Vec<Option<f64>> = Vec::with_capacity(d.consts.len());
        for (i, c) in d.consts.iter().enumerate() {
            let r = match self.override_of(&c.name.node) {
                Some(v) => Ok(v),
                None => eval_num(&c.value, &consts),
            };
            consts.values.borrow_mut()[i] = Some(r.as_ref().map(|v| *v).map_err(|_| ()));
            const_values.push(self.ok(r));
        }

        // dt first: ranges of time constants depend on it.
        let run_settings = d.run.map(|r| flat_settings(&r.items)).unwrap_or_default();
        let dt_override = self.valid_override("dt");
        let dt = match run_settings.iter().find(|s| s.key.node == "dt") {
            Some(_) if dt_override.is_some() => dt_override,
            Some(s) => self
                .ok(single_value(s).and_then(|v| eval_num(v, &consts)))
                .and_then(|dt| {
                    if dt > 0.0 {
                        Some(dt)
                    } else {
                        self.err(
                            Diagnostic::error("E0505", "the time step `dt` must be positive", s.values[0].span)
                                .with_label(format!("this is {dt}")),
                        );
                        None
                    }
                }),
            None => {
                match d.run {
                    Some(r) => self.err(
                        Diagnostic::error("E0602", "the run protocol sets no time step", r.span)
                            .with_label("`run` block without `dt`")
                            .with_help("add a line `dt 0.01` to the `run` block"),
                    ),
                    None => {
                        let span = file.decls.first().map_or(Span::default(), |d| d.span());
                        self.err(
                            Diagnostic::error(
                                "E0601",
                                "the model has no `run` block",
                                Span::new(span.start, span.start),
                            )
                            .with_label("expected a `run { dt … }` block in this file")
                            .with_help("add `run { dt 0.01 }` to set at least the time step"),
                        );
                    }
                }
                None
            }
        };
        consts.dt = dt;

        let fn_params: Vec<Vec<String>> = d
            .fns
            .iter()
            .map(|f| f.params.iter().map(|p| p.node.clone()).collect())
            .collect();
        let dataset_fields: Vec<Vec<String>> = d
            .datasets
            .iter()
            .map(|s| s.fields.iter().map(|(n, _)| n.node.clone()).collect())
            .collect();

        // Neuron types.
        let mut neurons: Vec<Option<NeuronType>> = Vec::new();
        for n in &d.neurons {
            let nt = {
                let r = Resolver {
                    symbols: &symbols,
                    neurons: &[],
                    pop_neuron: &[],
                    dataset_fields: &dataset_fields,
                    fn_params: &fn_params,
                    consts: &consts,
                };
                self.neuron(n, &r, &consts)
            };
            neurons.push(nt);
        }
        let pop_neuron: Vec<Option<usize>> = d
            .pops
            .iter()
            .map(|p| {
                symbols
                    .get(&p.neuron.node)
                    .filter(|s| s.kind == SymKind::Neuron)
                    .map(|s| s.index)
            })
            .collect();
        let resolver = Resolver {
            symbols: &symbols,
            neurons: &neurons,
            pop_neuron: &pop_neuron,
            dataset_fields: &dataset_fields,
            fn_params: &fn_params,
            consts: &consts,
        };

        // Functions (bodies may call other functions, but not recursively).
        let mut functions = Vec::new();
        for (i, f) in d.fns.iter().enumerate() {
            let mut seen = std::collections::HashSet::new();
            for p in &f.params {
                if !seen.insert(p.node.as_str()) {
                    self.err(
                        Diagnostic::error("E0201", format!("parameter `{}` is listed twice", p.node), p.span)
                            .with_label("repeated parameter"),
                    );
                }
            }
            let body = self.ok(resolver.resolve(&f.body, &Scope::Function(&fn_params[i])));
            functions.push(body.map(|body| Function {
                name: f.name.node.clone(),
                params: fn_params[i].clone(),
                body,
                span: f.span,
            }));
        }
        self.check_recursion(&functions, &d.fns);

        let datasets: Vec<Option<Dataset>> = d.datasets.iter().map(|s| self.dataset(s, &consts)).collect();
        let inputs: Vec<Option<Input>> = d
            .inputs
            .iter()
            .map(|i| {
                let size = self.ok(eval_count(&i.size, &consts, "an input's size"));
                let source = self.ok(resolver.resolve(&i.source, &Scope::Input));
                let (size, source) = (size?, source?);
                if let Some(bad) = list_len_mismatch(&source, size) {
                    self.err(
                        Diagnostic::error(
                            "E0302",
                            format!("input `{}` has {size} channels, but a list here has {bad}", i.name.node),
                            i.source.span,
                        )
                        .with_label(format!("list of {bad} values"))
                        .with_secondary(i.size.span, "size declared here"),
                    );
                    return None;
                }
                // A generator (`smooth`, `ou`, `npy`) produces the whole stream; it cannot be a
                // part of a larger expression.
                let generator = |e: &Expr| {
                    matches!(e, Expr::Call(Callee::Builtin(Builtin::Smooth | Builtin::Ou | Builtin::Npy), _))
                };
                let mut nested = false;
                match &source {
                    Expr::Call(_, args) if generator(&source) => {
                        args.iter().for_each(|a| visit(a, &mut |e| nested |= generator(e)))
                    }
                    _ => visit(&source, &mut |e| nested |= generator(e)),
                }
                if nested {
                    self.err(
                        Diagnostic::error(
                            "E0420",
                            "`smooth`, `ou` and `npy` must be the whole input source",
                            i.source.span,
                        )
                        .with_label("a generator inside a larger expression")
                        .with_help("make the generator the whole source (`input noise[1] = ou(tau: 1, sigma: 1)`); `smooth` takes the expression to smooth as its argument (`smooth(1 + square(t), sigma_steps: 5)`)"),
                    );
                    return None;
                }
                Some(Input {
                    name: i.name.node.clone(),
                    size,
                    source,
                    span: i.span,
                })
            })
            .collect();

        let populations: Vec<Option<Population>> = d
            .pops
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let nt = match pop_neuron[k] {
                    Some(ni) => neurons[ni].as_ref().map(|n| (ni, n)),
                    None => {
                        let d = match symbols.get(&p.neuron.node) {
                            Some(s) => Diagnostic::error(
                                "E0419",
                                format!("`{}` is {}, not a neuron type", p.neuron.node, s.kind.article()),
                                p.neuron.span,
                            )
                            .with_label("expected a neuron type")
                            .with_secondary(s.span, "defined here"),
                            None => diag::unknown_name(
                                "neuron type",
                                &p.neuron.node,
                                p.neuron.span,
                                symbols.names_of(SymKind::Neuron),
                            ),
                        };
                        self.err(d);
                        None
                    }
                };
                let size = self.ok(eval_count(&p.size, &consts, "a population's size"));
                let (ni, nt) = nt?;
                self.population(p, size?, ni, nt, &consts, dt)
            })
            .collect();

        let sizes = |s: &Source| -> Option<usize> {
            match s {
                Source::Input(i) => inputs[*i].as_ref().map(|x| x.size),
                Source::Population(p, _) => populations[*p].as_ref().map(|x| x.size),
            }
        };
        let mut projections: Vec<Option<Projection>> = Vec::new();
        for c in &d.connects {
            let arity: Vec<usize> = fn_params.iter().map(Vec::len).collect();
            let p = self.projection(
                c,
                &symbols,
                &neurons,
                &populations,
                &pop_neuron,
                &consts,
                &sizes,
                &arity,
            );
            projections.push(p);
        }

        // Energy and roles.
        let mut learners = vec![false; d.pops.len()];
        let energy = d.energy.and_then(|e| {
            let value = self.ok(resolver.resolve(&e.value, &Scope::Energy))?;
            let shape = self.ok(energy_shape(&e.value, &value, &populations, &inputs))?;
            if shape != Shape::Scalar {
                self.err(
                    Diagnostic::error("E0307", "the energy must be a scalar", e.value.span)
                        .with_label(format!("this is {}", shape.describe()))
                        .with_help("reduce vectors with `sum(…)`, `mse(…)` or `mismatch(…)`"),
                );
                return None;
            }
            let mut ok = true;
            visit(&value, &mut |x| {
                if let Expr::Call(Callee::Builtin(Builtin::Mismatch), args) = x {
                    for a in args {
                        if let Expr::Ref(Ref::Population(p)) = a {
                            learners[*p] = true;
                            let nt = pop_neuron[*p].and_then(|n| neurons[n].as_ref());
                            if let Some(nt) = nt
                                && nt.mismatch.is_none()
                            {
                                ok = false;
                                self.diags.push(
                                    Diagnostic::error(
                                        "E0410",
                                        format!(
                                            "population `{}` has no mismatch to put in the energy",
                                            d.pops[*p].name.node
                                        ),
                                        e.value.span,
                                    )
                                    .with_label(
                                        "`mismatch(…)` of a population whose neuron type declares no `mismatch`",
                                    )
                                    .with_secondary(nt.span, "neuron type defined here"),
                                );
                            }
                        }
                    }
                }
            });
            ok.then(|| Energy {
                name: e.name.as_ref().map_or("E".to_string(), |n| n.node.clone()),
                value,
                span: e.span,
            })
        });
        let mut populations = populations;
        for (p, pop) in populations.iter_mut().enumerate() {
            if let Some(pop) = pop {
                pop.role = if learners[p] { Role::Learner } else { Role::Fixed };
            }
        }

        // Rules.
        let mut rules = Vec::new();
        let mut ruled = vec![false; d.connects.len()];
        for r in &d.rules {
            let Some(sym) = symbols.get(&r.projection.node).copied() else {
                self.err(diag::unknown_name(
                    "projection",
                    &r.projection.node,
                    r.projection.span,
                    symbols.names_of(SymKind::Projection),
                ));
                continue;
            };
            if sym.kind != SymKind::Projection {
                self.err(
                    Diagnostic::error(
                        "E0419",
                        format!("`{}` is {}, not a projection", r.projection.node, sym.kind.article()),
                        r.projection.span,
                    )
                    .with_label("expected a projection")
                    .with_secondary(sym.span, "defined here"),
                );
                continue;
            }
            if std::mem::replace(&mut ruled[sym.index], true) {
                self.err(
                    Diagnostic::error(
                        "E0201",
                        format!("projection `{}` has more than one rule", r.projection.node),
                        r.projection.span,
                    )
                    .with_label("second rule"),
                );
                continue;
            }
            let Some(proj) = &projections[sym.index] else { continue };
            if let Some(rule) = self.rule(r, sym.index, proj, &populations, &neurons, &resolver, &consts) {
                rules.push(rule);
            }
        }

        // Learnability: a learned parameter needs an error (energy) or a rule. Skipped when the
        // energy itself failed to check, so one energy error does not cascade.
        let energy_ok = d.energy.is_none() || energy.is_some();
        for (k, proj) in projections.iter().enumerate().filter(|_| energy_ok) {
            let Some(proj) = proj else { continue };
            let Some(post) = &populations[proj.post] else { continue };
            if let Plasticity::Learn { .. } = proj.plasticity
                && post.role == Role::Fixed
                && !ruled[k]
            {
                self.err(
                    Diagnostic::error(
                        "E0411",
                        format!("projection `{}` is marked `learn` but can never learn", proj.name),
                        d.connects[k].span,
                    )
                    .with_label("learnable projection")
                    .with_secondary(
                        post.span,
                        format!(
                            "`{}` is in no `mismatch(…)` term of the energy, so it receives no error",
                            post.name
                        ),
                    )
                    .with_help("add the population to the energy, give the projection a `rule`, or mark it `fixed`"),
                );
            }
        }
        for (k, pop) in populations.iter().enumerate().filter(|_| energy_ok) {
            let Some(pop) = pop else { continue };
            if pop.role == Role::Fixed
                && let Some(pv) = pop.params.iter().find(|p| p.learn)
            {
                self.err(
                    Diagnostic::error(
                        "E0411",
                        format!(
                            "a parameter of `{}` is marked `learn`, but the population receives no error",
                            pop.name
                        ),
                        pv.span,
                    )
                    .with_label("learnable parameter")
                    .with_secondary(d.pops[k].name.span, "in no `mismatch(…)` term of the energy")
                    .with_help("add the population to the energy, or drop `learn`"),
                );
            }
        }

        let learning = self.learning(d.learn, &consts, &neurons);
        let protocol = self.protocol(
            d.run,
            dt,
            &symbols,
            &consts,
            &pop_neuron,
            &neurons,
            &projections,
            &datasets,
        );

        let name = d.model.map_or_else(|| fallback_name.to_string(), |n| n.node.clone());
        let consts_ir = d
            .consts
            .iter()
            .zip(&const_values)
            .map(|(c, v)| {
                v.map(|value| Const {
                    name: c.name.node.clone(),
                    value,
                    span: c.span,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Model {
            name,
            consts: consts_ir,
            functions: functions.into_iter().collect::<Option<_>>()?,
            neurons: neurons.into_iter().collect::<Option<_>>()?,
            inputs: inputs.into_iter().collect::<Option<_>>()?,
            datasets: datasets.into_iter().collect::<Option<_>>()?,
            populations: populations.into_iter().collect::<Option<_>>()?,
            projections: projections.into_iter().collect::<Option<_>>()?,
            energy,
            rules,
            learning: learning?,
            protocol: protocol?,
        })
    }

    fn check_recursion(&mut self, functions: &[Option<Function>], decls: &[&ast::FnDecl]) {
        let calls: Vec<Vec<usize>> = functions
            .iter()
            .map(|f| {
                let mut out = Vec::new();
                if let Some(f) = f {
                    visit(&f.body, &mut |e| {
                        if let Expr::Call(Callee::User(j), _) = e {
                            out.push(*j);
                        }
                    });
                }
                out
            })
            .collect();
        for start in 0..functions.len() {
            let mut stack = calls[start].clone();
            let mut seen = vec![false; functions.len()];
            while let Some(j) = stack.pop() {
                if j == start {
                    self.err(
                        Diagnostic::error(
                            "E0213",
                            format!("function `{}` calls itself", decls[start].name.node),
                            decls[start].name.span,
                        )
                        .with_label("recursive function")
                        .with_note("functions are expanded inline and cannot be recursive"),
                    );
                    break;
                }
                if !std::mem::replace(&mut seen[j], true) {
                    stack.extend(&calls[j]);
                }
            }
        }
    }

    fn neuron(&mut self, n: &ast::NeuronDecl, r: &Resolver, consts: &Consts) -> Option<NeuronType> {
        let errors_before = self.diags.len();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut params = Vec::new();
        let mut param_names = Vec::new();
        let mut states = Vec::new();
        let mut state_names = Vec::new();
        let mut compartments = Vec::new();
        let mut comp_names = Vec::new();
        let mut leak = None;
        // Names first, so definitions may refer to parameters, states and compartments
        // declared anywhere in the neuron.
        for item in &n.items {
            let name = match item {
                ast::NeuronItem::Param { name, .. }
                | ast::NeuronItem::State(name)
                | ast::NeuronItem::Let { name, .. }
                | ast::NeuronItem::Rate { name, .. }
                | ast::NeuronItem::Mismatch { name, .. }
                | ast::NeuronItem::Compartment { name, .. } => name,
                ast::NeuronItem::Setting(_) => continue,
            };
            if name.node == "input" || is_reserved(&name.node) {
                self.err(
                    Diagnostic::error(
                        "E0202",
                        format!("`{}` is a built-in name and cannot be redefined", name.node),
                        name.span,
                    )
                    .with_label("reserved name"),
                );
                continue;
            }
            if let Some(first) = seen.insert(&name.node, name.span) {
                self.err(diag::duplicate(
                    &format!("`{}` member", n.name.node),
                    &name.node,
                    name.span,
                    first,
                ));
                continue;
            }
            match item {
                ast::NeuronItem::Param { name, default } => {
                    let default = default.as_ref().and_then(|e| self.ok(eval_num(e, consts)));
                    params.push(ParamDecl {
                        name: name.node.clone(),
                        default,
                        time_constant: false,
                        span: name.span,
                    });
                    param_names.push(name.node.clone());
                }
                ast::NeuronItem::State(name) => {
                    states.push(Named {
                        name: name.node.clone(),
                        span: name.span,
                    });
                    state_names.push(name.node.clone());
                }
                ast::NeuronItem::Compartment { name, .. } => comp_names.push(name.node.clone()),
                _ => {}
            }
        }
        let mut defs: Vec<Def> = Vec::new();
        let mut def_names: Vec<String> = Vec::new();
        let mut rate = None;
        let mut mismatch = None;
        let mut time_constants = Vec::new();
        for item in &n.items {
            fn scope<'s>(
                params: &'s [String],
                states: &'s [String],
                compartments: &'s [String],
                defs: &'s [String],
                rate: bool,
            ) -> Scope<'s> {
                Scope::Neuron(NeuronScope {
                    params,
                    states,
                    compartments,
                    defs,
                    rate,
                })
            }
            match item {
                ast::NeuronItem::Let { name, value }
                | ast::NeuronItem::Rate { name, value }
                | ast::NeuronItem::Mismatch { name, value } => {
                    let kind = match item {
                        ast::NeuronItem::Let { .. } => DefKind::Let,
                        ast::NeuronItem::Rate { .. } => DefKind::Rate,
                        _ => DefKind::Mismatch,
                    };
                    let slot = match kind {
                        DefKind::Rate => Some(&mut rate),
                        DefKind::Mismatch => Some(&mut mismatch),
                        DefKind::Let => None,
                    };
                    if let Some(slot) = slot {
                        if let Some((_, first)) = slot {
                            let what = if kind == DefKind::Rate { "rate" } else { "mismatch" };
                            self.err(
                                Diagnostic::error(
                                    "E0201",
                                    format!("neuron type `{}` declares more than one {what}", n.name.node),
                                    name.span,
                                )
                                .with_label(format!("second {what}"))
                                .with_secondary(*first, format!("first {what} here")),
                            );
                            continue;
                        }
                        *slot = Some((defs.len(), name.span));
                    }
                    // A definition that fails to resolve still takes its slot, so later
                    // definitions that use its name do not report it as unknown.
                    let v = self
                        .ok(r.resolve(
                            value,
                            &scope(
                                &param_names,
                                &state_names,
                                &comp_names,
                                &def_names,
                                kind == DefKind::Rate,
                            ),
                        ))
                        .unwrap_or(Expr::Num(f64::NAN));
                    collect_taus(&v, value, &mut time_constants);
                    defs.push(Def {
                        name: name.node.clone(),
                        kind,
                        value: v,
                        span: name.span,
                    });
                    def_names.push(name.node.clone());
                }
                ast::NeuronItem::Compartment { name, settings } => {
                    let mut conductance = None;
                    for s in settings {
                        match s.key.node.as_str() {
                            "conductance" => {
                                if let Some(v) = self.ok(single_value(s)) {
                                    conductance = self
                                        .ok(r.resolve(v, &scope(&param_names, &state_names, &comp_names, &[], false)));
                                }
                            }
                            _ => self.unknown_setting(s, &["conductance"], "a compartment"),
                        }
                    }
                    compartments.push(Compartment {
                        name: name.node.clone(),
                        conductance,
                        span: name.span,
                    });
                }
                ast::NeuronItem::Setting(s) => match s.key.node.as_str() {
                    "leak" => {
                        if let Some(v) = self.ok(single_value(s)) {
                            leak = self.ok(r.resolve(v, &scope(&param_names, &state_names, &comp_names, &[], false)));
                        }
                    }
                    _ => self.unknown_setting(s, &["leak"], "a neuron type"),
                },
                _ => {}
            }
        }
        if states.is_empty() {
            self.err(
                Diagnostic::error(
                    "E0404",
                    format!("neuron type `{}` has no state variable", n.name.node),
                    n.name.span,
                )
                .with_label("no `state`")
                .with_help("declare the membrane potential with `state u`"),
            );
        }
        let Some((rate, _)) = rate else {
            self.err(
                Diagnostic::error(
                    "E0404",
                    format!("neuron type `{}` has no rate", n.name.node),
                    n.name.span,
                )
                .with_label("no `rate`")
                .with_help("define the output, e.g. `rate r = tanh(D[tau_r] u)`"),
            );
            return None;
        };
        if mismatch.is_none() && (compartments.is_empty() || leak.is_none()) {
            self.err(
                Diagnostic::error(
                    "E0404",
                    format!("neuron type `{}` has no membrane equation", n.name.node),
                    n.name.span,
                )
                .with_label("neither a `mismatch` nor compartments with a `leak`")
                .with_help("add `mismatch e = D[tau_m] u - input`, or compartments plus `leak g_l`"),
            );
        }
        for (tau, _) in &time_constants {
            if let Expr::Ref(Ref::Own(NeuronVar::Param(i))) = tau {
                params[*i].time_constant = true;
            }
        }
        if self.diags.len() > errors_before {
            return None;
        }
        Some(NeuronType {
            name: n.name.node.clone(),
            params,
            states,
            compartments,
            defs,
            rate,
            mismatch: mismatch.map(|(i, _)| i),
            leak,
            time_constants,
            span: n.span,
        })
    }

    fn unknown_setting(&mut self, s: &Setting, known: &[&str], place: &str) {
        let mut d = Diagnostic::error(
            "E0206",
            format!("unknown setting `{}` in {place}", s.key.node),
            s.key.span,
        )
        .with_label("unknown setting")
        .with_note(format!("known settings: {}", known.join(", ")));
        if let Some(c) = closest(&s.key.node, known.iter().copied()) {
            d = d.with_help(format!("did you mean `{c}`?"));
        }
        self.err(d);
    }

    fn dataset(&mut self, s: &ast::DatasetDecl, consts: &Consts) -> Option<Dataset> {
        let before = self.diags.len();
        let mut file = None;
        let mut present = Presentation::Stream;
        let mut steps_per_sample = None;
        let mut shuffle_seed = None;
        for st in &s.settings {
            match st.key.node.as_str() {
                "file" => file = self.ok(single_value(st).and_then(string_value)),
                "present" => {
                    present = match self.ok(single_value(st).and_then(|v| word(v, &["stream", "hold"]))) {
                        Some("hold") => Presentation::Hold,
                        _ => Presentation::Stream,
                    }
                }
                "steps_per_sample" => {
                    steps_per_sample =
                        self.ok(single_value(st).and_then(|v| eval_count(v, consts, "`steps_per_sample`")));
                }
                "shuffle" => shuffle_seed = self.ok(single_value(st).and_then(|v| seed_value(v, consts))),
                _ => self.unknown_setting(st, &["file", "present", "steps_per_sample", "shuffle"], "a dataset"),
            }
        }
        let mut fields = Vec::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for (name, value) in &s.fields {
            if let Some(first) = seen.insert(&name.node, name.span) {
                self.err(diag::duplicate("field", &name.node, name.span, first));
                continue;
            }
            let source = self.ok(data_source(value, consts));
            if let Some(source) = source {
                fields.push(DataField {
                    name: name.node.clone(),
                    source,
                    span: name.span,
                });
            }
        }
        let Some(file) = file else {
            if self.diags.len() == before {
                self.err(
                    Diagnostic::error("E0404", format!("dataset `{}` names no file", s.name.node), s.name.span)
                        .with_label("no `file`")
                        .with_help("add `file \"data/name.npz\"`"),
                );
            }
            return None;
        };
        if present == Presentation::Hold && steps_per_sample.is_none() {
            self.err(
                Diagnostic::error(
                    "E0404",
                    format!(
                        "dataset `{}` holds each sample but does not say for how long",
                        s.name.node
                    ),
                    s.name.span,
                )
                .with_label("`present hold` without `steps_per_sample`")
                .with_help("add `steps_per_sample 100`"),
            );
        }
        (self.diags.len() == before).then(|| Dataset {
            name: s.name.node.clone(),
            file,
            fields,
            present,
            steps_per_sample,
            shuffle_seed,
            span: s.span,
        })
    }

    fn population(
        &mut self,
        p: &ast::PopulationDecl,
        size: usize,
        ni: usize,
        nt: &NeuronType,
        consts: &Consts,
        dt: Option<f64>,
    ) -> Option<Population> {
        let before = self.diags.len();
        let param_names: Vec<&str> = nt.params.iter().map(|q| q.name.as_str()).collect();
        // Whole-population values.
        let mut whole: Vec<Given> = vec![None; nt.params.len()];
        let mut set_at: Vec<Option<Span>> = vec![None; nt.params.len()];
        for v in &p.values {
            let Some(i) = self.param_index(v, nt, &param_names, &mut set_at) else {
                continue;
            };
            if let (Some(init), Some(learn)) =
                (self.ok(param_init(&v.value, consts, size)), self.param_learn(v, consts))
            {
                whole[i] = Some((init, learn, v.value.span));
            }
        }
        // Groups.
        let mut group_segments: Vec<(usize, Vec<Given>)> = Vec::new();
        let mut total = 0usize;
        for g in &p.groups {
            let Some(count) = self.ok(eval_count(&g.count, consts, "a group's size")) else {
                continue;
            };
            total += count;
            let mut vals: Vec<Given> = vec![None; nt.params.len()];
            let mut gset: Vec<Option<Span>> = vec![None; nt.params.len()];
            for v in &g.values {
                let Some(i) = self.param_index(v, nt, &param_names, &mut gset) else {
                    continue;
                };
                if let Some(prev) = set_at[i] {
                    self.err(
                        Diagnostic::error(
                            "E0201",
                            format!("`{}` is set for the whole population and again in a group", v.name.node),
                            v.name.span,
                        )
                        .with_label("set again in this group")
                        .with_secondary(prev, "set for the whole population here"),
                    );
                    continue;
                }
                if let (Some(init), Some(learn)) = (
                    self.ok(param_init(&v.value, consts, count)),
                    self.param_learn(v, consts),
                ) {
                    vals[i] = Some((init, learn, v.value.span));
                }
            }
            group_segments.push((count, vals));
        }
        if !p.groups.is_empty() && total != size && self.diags.len() == before {
            self.err(
                Diagnostic::error(
                    "E0303",
                    format!(
                        "the groups of `{}` hold {total} neurons, but the population has {size}",
                        p.name.node
                    ),
                    p.span,
                )
                .with_label(format!("groups add up to {total}"))
                .with_secondary(p.size.span, format!("size {size} declared here")),
            );
        }
        if self.diags.len() > before {
            return None;
        }
        let mut params = Vec::new();
        for (i, decl) in nt.params.iter().enumerate() {
            let default = decl.default.map(|v| (Init::Const(v), None, decl.span));
            let mut segments = Vec::new();
            let mut learn = None;
            let mut span = decl.span;
            let mut missing = false;
            let parts: Vec<(usize, Given)> = if group_segments.is_empty() {
                vec![(size, whole[i].clone().or(default.clone()))]
            } else {
                group_segments
                    .iter()
                    .map(|(count, vals)| (*count, vals[i].clone().or(whole[i].clone()).or(default.clone())))
                    .collect()
            };
            for (count, v) in parts {
                match v {
                    Some((init, l, s)) => {
                        if l.is_some() {
                            learn = l;
                        }
                        if s != decl.span {
                            span = s;
                        }
                        segments.push((count, init));
                    }
                    None => missing = true,
                }
            }
            if missing {
                self.err(
                    Diagnostic::error(
                        "E0406",
                        format!("parameter `{}` of `{}` has no value", decl.name, p.name.node),
                        p.span,
                    )
                    .with_label("no value given here")
                    .with_secondary(decl.span, "declared without a default")
                    .with_help(format!("write `{}({}: …)`", nt.name, decl.name)),
                );
                continue;
            }
            // Merge adjacent equal segments so that `group`s of a uniform value stay one segment.
            let mut merged: Vec<(usize, Init)> = Vec::new();
            for (count, init) in segments {
                match merged.last_mut() {
                    Some((c, last)) if *last == init && !matches!(init, Init::Values(_)) => *c += count,
                    _ => merged.push((count, init)),
                }
            }
            params.push(ParamValue {
                segments: merged,
                learn: learn.is_some(),
                lr_factor: learn.map_or(1.0, |(_, f)| f),
                span,
            });
        }
        if self.diags.len() > before {
            return None;
        }
        self.check_time_constants(p, nt, &params, dt);
        (self.diags.len() == before).then(|| Population {
            name: p.name.node.clone(),
            size,
            neuron: ni,
            params,
            role: Role::Fixed,
            span: p.span,
        })
    }

    /// The `learn` mark of a population value: `None` on an error, else `Some(None)` when the
    /// value is not learned and `Some(Some((span, lr factor)))` when it is.
    #[allow(clippy::option_option)]
    fn param_learn(&mut self, v: &ast::PopValue, consts: &Consts) -> Option<Option<(Span, f64)>> {
        let Some(span) = v.learn else {
            return Some(None);
        };
        let lr = self.ok(named_number_args(
            &Ident::new("learn".into(), span),
            &v.learn_args,
            &[("lr", Some(1.0))],
            consts,
        ))?;
        if lr[0] <= 0.0 {
            self.err(
                Diagnostic::error("E0504", "a learning-rate factor must be positive", span)
                    .with_label(format!("this is {}", lr[0])),
            );
            return None;
        }
        Some(Some((span, lr[0])))
    }

    fn param_index(
        &mut self,
        v: &ast::PopValue,
        nt: &NeuronType,
        names: &[&str],
        set: &mut [Option<Span>],
    ) -> Option<usize> {
        let Some(i) = names.iter().position(|n| *n == v.name.node) else {
            let is_state =
                nt.states.iter().any(|s| s.name == v.name.node) || nt.defs.iter().any(|s| s.name == v.name.node);
            let d = if is_state {
                Diagnostic::error(
                    "E0405",
                    format!(
                        "`{}` is not a parameter of `{}`; only parameters take values",
                        v.name.node, nt.name
                    ),
                    v.name.span,
                )
                .with_label("a state or derived quantity")
                .with_note("states start at zero; derived quantities follow from the dynamics")
            } else {
                diag::unknown_member(
                    "parameter",
                    &v.name.node,
                    &format!("neuron type `{}`", nt.name),
                    v.name.span,
                    names.iter().copied(),
                )
            };
            self.err(d);
            return None;
        };
        if let Some(first) = set[i] {
            self.err(diag::duplicate("value of", &v.name.node, v.name.span, first));
            return None;
        }
        set[i] = Some(v.name.span);
        Some(i)
    }

    /// Every deterministic time constant must be positive and at least `dt`.
    fn check_time_constants(
        &mut self,
        p: &ast::PopulationDecl,
        nt: &NeuronType,
        params: &[ParamValue],
        dt: Option<f64>,
    ) {
        let size: usize = params.first().map_or(0, |pv| pv.segments.iter().map(|s| s.0).sum());
        for (tau, tau_span) in &nt.time_constants {
            let direct = match tau {
                Expr::Ref(Ref::Own(NeuronVar::Param(i))) => Some(*i),
                _ => None,
            };
            let mut reported = false;
            for k in run_starts(params, size) {
                let Some(v) = eval_per_neuron(tau, params, k) else {
                    continue;
                };
                let bad = if v <= 0.0 {
                    Some(("E0502", format!("time constant must be positive, but it is {v}")))
                } else {
                    dt.filter(|dt| v < *dt).map(|dt| {
                        (
                            "E0503",
                            format!("time constant {v} is smaller than the time step dt = {dt}"),
                        )
                    })
                };
                if let Some((code, msg)) = bad {
                    let span = direct.map_or(p.span, |i| params[i].span);
                    let mut d = Diagnostic::error(code, msg, span)
                        .with_label(format!("neuron {k} of `{}`", p.name.node))
                        .with_secondary(*tau_span, "used as a time constant here");
                    if code == "E0503" {
                        d = d.with_note("explicit Euler needs every τ ≥ dt (τ = dt is allowed)");
                    }
                    self.err(d);
                    reported = true;
                    break;
                }
            }
            if reported {
                return;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn projection(
        &mut self,
        c: &ast::ConnectDecl,
        symbols: &Symbols,
        neurons: &[Option<NeuronType>],
        populations: &[Option<Population>],
        pop_neuron: &[Option<usize>],
        consts: &Consts,
        sizes: &dyn Fn(&Source) -> Option<usize>,
        fn_arity: &[usize],
    ) -> Option<Projection> {
        let (name, _) = projection_name(c);
        let pre = match symbols.get(&c.pre.node.node) {
            Some(s) if s.kind == SymKind::Input => {
                if let Some(m) = &c.pre.member {
                    self.err(
                        Diagnostic::error("E0208", format!("input `{}` has no members", c.pre.node.node), m.span)
                            .with_label("inputs are read whole"),
                    );
                    return None;
                }
                Some(Source::Input(s.index))
            }
            Some(s) if s.kind == SymKind::Population => {
                let nt = pop_neuron[s.index].and_then(|n| neurons[n].as_ref())?;
                match &c.pre.member {
                    None => Some(Source::Population(s.index, NeuronVar::Def(nt.rate))),
                    Some(m) => self
                        .ok(neuron_member(nt, m, &c.pre.node.node))
                        .map(|v| Source::Population(s.index, v)),
                }
            }
            Some(s) => {
                self.err(
                    Diagnostic::error(
                        "E0407",
                        format!(
                            "a projection starts at a population or an input, but `{}` is {}",
                            c.pre.node.node,
                            s.kind.article()
                        ),
                        c.pre.node.span,
                    )
                    .with_label("not a population or input")
                    .with_secondary(s.span, "defined here"),
                );
                None
            }
            None => {
                let cands = symbols
                    .names_of(SymKind::Population)
                    .chain(symbols.names_of(SymKind::Input));
                self.err(diag::unknown_name(
                    "population or input",
                    &c.pre.node.node,
                    c.pre.node.span,
                    cands,
                ));
                None
            }
        };
        let post = match symbols.get(&c.post.node.node) {
            Some(s) if s.kind == SymKind::Population => Some(s.index),
            Some(s) => {
                let mut d = Diagnostic::error(
                    "E0407",
                    format!(
                        "a projection ends at a population, but `{}` is {}",
                        c.post.node.node,
                        s.kind.article()
                    ),
                    c.post.node.span,
                )
                .with_label("not a population")
                .with_secondary(s.span, "defined here");
                if s.kind == SymKind::Input {
                    d = d.with_note("inputs are driven by their source and receive no projections");
                }
                self.err(d);
                None
            }
            None => {
                self.err(diag::unknown_name(
                    "population",
                    &c.post.node.node,
                    c.post.node.span,
                    symbols.names_of(SymKind::Population),
                ));
                None
            }
        };
        let (pre, post) = (pre?, post?);
        let post_pop = populations[post].as_ref()?;
        let post_nt = neurons[post_pop.neuron].as_ref()?;
        let compartment = match &c.post.member {
            None => None,
            Some(m) => match post_nt.compartments.iter().position(|x| x.name == m.node) {
                Some(i) => Some(i),
                None => {
                    self.err(diag::unknown_member(
                        "compartment",
                        &m.node,
                        &format!("`{}` (neuron type `{}`)", c.post.node.node, post_nt.name),
                        m.span,
                        post_nt.compartments.iter().map(|x| x.name.as_str()),
                    ));
                    return None;
                }
            },
        };
        if compartment.is_none() && post_nt.mismatch.is_none() {
            self.err(
                Diagnostic::error(
                    "E0407",
                    format!(
                        "`{}` has no synaptic input of its own; connect to one of its compartments",
                        c.post.node.node
                    ),
                    c.post.span,
                )
                .with_label("projection onto the soma of a compartmental neuron")
                .with_secondary(post_nt.span, "neuron type without `input` in a mismatch"),
            );
            return None;
        }
        let pre_size = sizes(&pre)?;
        let post_size = post_pop.size;
        let shape = (post_size, pre_size);
        let connectivity = self.ok(connectivity(&c.kind, consts, shape, fn_arity))?;
        let mut plasticity = None;
        let mut feedback = Feedback::Transpose;
        for m in &c.modifiers {
            match m {
                ast::Modifier::Fixed(span) | ast::Modifier::Learn { span, .. } => {
                    if plasticity.is_some() {
                        self.err(
                            Diagnostic::error("E0408", "a projection is either `fixed` or `learn`, once", *span)
                                .with_label("conflicting or repeated plasticity mode"),
                        );
                        continue;
                    }
                    plasticity = Some(match m {
                        ast::Modifier::Fixed(_) => Plasticity::Fixed,
                        ast::Modifier::Learn { args, span } => {
                            if connectivity == Connectivity::Identity {
                                self.err(
                                    Diagnostic::error(
                                        "E0409",
                                        "an `identity` projection has no weights to learn",
                                        *span,
                                    )
                                    .with_label("`learn` on an identity map")
                                    .with_help("use `diagonal(init: 1)` for a learnable one-to-one weight"),
                                );
                            }
                            let lr = self.ok(named_number_args(
                                &Ident::new("learn".into(), *span),
                                args,
                                &[("lr", Some(1.0))],
                                consts,
                            ))?;
                            if lr[0] <= 0.0 {
                                self.err(
                                    Diagnostic::error("E0504", "a learning-rate factor must be positive", *span)
                                        .with_label(format!("this is {}", lr[0])),
                                );
                            }
                            Plasticity::Learn { lr_factor: lr[0] }
                        }
                        ast::Modifier::Feedback(_) => unreachable!("matched above"),
                    });
                }
                ast::Modifier::Feedback(e) => {
                    feedback = match &e.node {
                        ExprKind::Path(p) if p.len() == 1 && p[0].node == "transpose" => Feedback::Transpose,
                        ExprKind::Call { func, args } if func.node == "random" => {
                            let dist = self
                                .ok(diag::expect_args(func, args, 1)
                                    .and_then(|()| distribution(&args[0].value, consts)))?;
                            Feedback::Random(dist)
                        }
                        _ => {
                            self.err(
                                Diagnostic::error("E0414", "feedback is `transpose` or `random(distribution)`", e.span)
                                    .with_label("unknown feedback"),
                            );
                            return None;
                        }
                    }
                }
            }
        }
        Some(Projection {
            name,
            pre,
            post,
            compartment,
            connectivity,
            shape,
            plasticity: plasticity.unwrap_or(Plasticity::Fixed),
            feedback,
            span: c.span,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn rule(
        &mut self,
        r: &ast::RuleDecl,
        index: usize,
        proj: &Projection,
        populations: &[Option<Population>],
        neurons: &[Option<NeuronType>],
        resolver: &Resolver,
        consts: &Consts,
    ) -> Option<PlasticityRule> {
        let before = self.diags.len();
        if proj.plasticity == Plasticity::Fixed {
            self.err(
                Diagnostic::error(
                    "E0413",
                    format!("projection `{}` is `fixed`, but has a plasticity rule", proj.name),
                    r.projection.span,
                )
                .with_label("rule for a fixed projection")
                .with_secondary(proj.span, "declared here")
                .with_help("mark the projection `learn`"),
            );
        }
        let post_nt = neurons[populations[proj.post].as_ref()?.neuron].as_ref()?;
        let pre_nt = match proj.pre {
            Source::Input(_) => None,
            Source::Population(p, _) => Some(neurons[populations[p].as_ref()?.neuron].as_ref()?),
        };
        let scope = Scope::Rule(RuleScope {
            projection: &proj.name,
            pre: pre_nt,
            post: post_nt,
        });
        let mut weight = None;
        let mut bias = None;
        for (target, value) in &r.updates {
            let slot = match target.node.as_str() {
                "dW" => &mut weight,
                "db" => &mut bias,
                _ => {
                    self.err(
                        Diagnostic::error(
                            "E0210",
                            format!("a rule updates `dW` or `db`, not `{}`", target.node),
                            target.span,
                        )
                        .with_label("unknown update target"),
                    );
                    continue;
                }
            };
            if slot.is_some() {
                self.err(
                    Diagnostic::error("E0201", format!("`{}` is updated twice", target.node), target.span)
                        .with_label("second update"),
                );
                continue;
            }
            *slot = self.ok(resolver.resolve(value, &scope));
        }
        if r.updates.is_empty() {
            self.err(
                Diagnostic::error("E0404", "a rule needs an update `dW = …`", r.span)
                    .with_label("rule without updates"),
            );
        }
        let mut clip = None;
        let mut lr = 1.0;
        let mut lr_const = None;
        for s in &r.settings {
            match s.key.node.as_str() {
                "clip" => {
                    if s.values.len() != 2 {
                        self.err(
                            Diagnostic::error("E0211", "`clip` takes two values: `clip lo, hi`", s.span)
                                .with_label("expected two values"),
                        );
                        continue;
                    }
                    let lo = self.ok(eval_num(&s.values[0], consts));
                    let hi = self.ok(eval_num(&s.values[1], consts));
                    if let (Some(lo), Some(hi)) = (lo, hi) {
                        if lo > hi {
                            self.err(
                                Diagnostic::error("E0507", format!("empty clip range: {lo} > {hi}"), s.span)
                                    .with_label("lower bound above upper bound"),
                            );
                        }
                        clip = Some((lo, hi));
                    }
                }
                "lr" => {
                    if let Some(v) = self.ok(single_value(s).and_then(|v| eval_num(v, consts))) {
                        if v <= 0.0 {
                            self.err(
                                Diagnostic::error("E0504", "a learning rate must be positive", s.values[0].span)
                                    .with_label(format!("this is {v}")),
                            );
                        }
                        lr = v;
                        if let [
                            ast::Expr {
                                node: ExprKind::Path(path),
                                ..
                            },
                        ] = s.values.as_slice()
                            && let [name] = path.as_slice()
                        {
                            lr_const = consts
                                .symbols
                                .get(&name.node)
                                .filter(|sym| sym.kind == SymKind::Const)
                                .map(|sym| sym.index);
                        }
                    }
                }
                _ => self.unknown_setting(s, &["clip", "lr"], "a rule"),
            }
        }
        (self.diags.len() == before).then_some(PlasticityRule {
            projection: index,
            weight,
            bias,
            clip,
            lr,
            lr_const,
            span: r.span,
        })
    }

    fn learning(
        &mut self,
        block: Option<&ast::Block>,
        consts: &Consts,
        neurons: &[Option<NeuronType>],
    ) -> Option<Learning> {
        let before = self.diags.len();
        let mut learning = Learning {
            errors: ErrorMode::Prospective,
            optimizer: Optimizer::Sgd { lr: 1.0 },
            plateau: None,
            clamps: Vec::new(),
        };
        let Some(block) = block else { return Some(learning) };
        for s in &block.settings {
            match s.key.node.as_str() {
                "errors" => {
                    let Some(v) = self.ok(single_value(s)) else { continue };
                    learning.errors = match &v.node {
                        ExprKind::Call { func, args } if func.node == "adjoint" => {
                            match self.ok(named_number_args(func, args, &[("window", None)], consts)) {
                                Some(w) if w[0] >= 1.0 && w[0].fract() == 0.0 => {
                                    ErrorMode::Adjoint { window: w[0] as usize }
                                }
                                Some(w) => {
                                    self.err(
                                        Diagnostic::error(
                                            "E0506",
                                            "the adjoint window must be a whole number of steps ≥ 1",
                                            v.span,
                                        )
                                        .with_label(format!("window {}", w[0])),
                                    );
                                    continue;
                                }
                                None => continue,
                            }
                        }
                        _ => match self.ok(word(v, &["prospective", "instantaneous", "adjoint"])) {
                            Some("prospective") => ErrorMode::Prospective,
                            Some("instantaneous") => ErrorMode::Instantaneous,
                            Some(_) => {
                                self.err(
                                    Diagnostic::error(
                                        "E0211",
                                        "`adjoint` needs a window: `adjoint(window: 300)`",
                                        v.span,
                                    )
                                    .with_label("window missing"),
                                );
                                continue;
                            }
                            None => continue,
                        },
                    }
                }
                "optimizer" => {
                    let Some(v) = self.ok(single_value(s)) else { continue };
                    let ExprKind::Call { func, args } = &v.node else {
                        self.err(
                            Diagnostic::error(
                                "E0414",
                                "an optimizer is `sgd(lr: …)`, `momentum(lr: …, mu: …)` or `adam(lr: …)`",
                                v.span,
                            )
                            .with_label("expected an optimizer call"),
                        );
                        continue;
                    };
                    let opt = match func.node.as_str() {
                        "sgd" => self
                            .ok(named_number_args(func, args, &[("lr", None)], consts))
                            .map(|a| Optimizer::Sgd { lr: a[0] }),
                        "momentum" => self
                            .ok(named_number_args(
                                func,
                                args,
                                &[("lr", None), ("mu", Some(0.9))],
                                consts,
                            ))
                            .map(|a| Optimizer::Momentum { lr: a[0], mu: a[1] }),
                        "adam" => self
                            .ok(named_number_args(
                                func,
                                args,
                                &[
                                    ("lr", None),
                                    ("beta1", Some(0.9)),
                                    ("beta2", Some(0.999)),
                                    ("eps", Some(1e-8)),
                                ],
                                consts,
                            ))
                            .map(|a| Optimizer::Adam {
                                lr: a[0],
                                beta1: a[1],
                                beta2: a[2],
                                eps: a[3],
                            }),
                        other => {
                            self.err(diag::unknown_name(
                                "optimizer",
                                other,
                                func.span,
                                ["sgd", "momentum", "adam"],
                            ));
                            None
                        }
                    };
                    let Some(opt) = opt else { continue };
                    let lr = match opt {
                        Optimizer::Sgd { lr } | Optimizer::Momentum { lr, .. } | Optimizer::Adam { lr, .. } => lr,
                    };
                    if lr <= 0.0 {
                        self.err(
                            Diagnostic::error("E0504", "the learning rate must be positive", v.span)
                                .with_label(format!("lr = {lr}")),
                        );
                    }
                    learning.optimizer = opt;
                }
                "plateau" => {
                    let Some(v) = self.ok(single_value(s)) else { continue };
                    let ExprKind::Call { func, args } = &v.node else {
                        self.err(Diagnostic::error(
                            "E0414",
                            "write `plateau plateau(patience: 2, factor: 0.5)`",
                            v.span,
                        ));
                        continue;
                    };
                    if let Some(a) = self.ok(named_number_args(
                        func,
                        args,
                        &[("patience", None), ("factor", None)],
                        consts,
                    )) {
                        if !(0.0..1.0).contains(&a[1]) || a[1] == 0.0 {
                            self.err(
                                Diagnostic::error("E0507", "the plateau factor must lie in (0, 1)", v.span)
                                    .with_label(format!("factor {}", a[1])),
                            );
                        } else if a[0] < 0.0 || a[0].fract() != 0.0 {
                            self.err(
                                Diagnostic::error(
                                    "E0506",
                                    "the plateau patience must be a whole number of epochs",
                                    v.span,
                                )
                                .with_label(format!("patience {}", a[0])),
                            );
                        } else {
                            learning.plateau = Some((a[0] as usize, a[1]));
                        }
                    }
                }
                "clamp_min" => {
                    if s.values.len() != 2 {
                        self.err(
                            Diagnostic::error(
                                "E0211",
                                "`clamp_min` takes a parameter name and a minimum: `clamp_min tau_m, 0.1`",
                                s.span,
                            )
                            .with_label("expected two values"),
                        );
                        continue;
                    }
                    let ExprKind::Path(p) = &s.values[0].node else {
                        self.err(
                            Diagnostic::error("E0414", "expected a parameter name", s.values[0].span)
                                .with_label("not a name"),
                        );
                        continue;
                    };
                    let pname = p.iter().map(|x| x.node.as_str()).collect::<Vec<_>>().join(".");
                    let known = neurons
                        .iter()
                        .flatten()
                        .any(|n| n.params.iter().any(|q| q.name == pname));
                    if !known {
                        let all: Vec<&str> = neurons
                            .iter()
                            .flatten()
                            .flat_map(|n| n.params.iter().map(|q| q.name.as_str()))
                            .collect();
                        self.err(diag::unknown_name("parameter", &pname, s.values[0].span, all));
                        continue;
                    }
                    if let Some(min) = self.ok(eval_num(&s.values[1], consts)) {
                        learning.clamps.push((pname, min));
                    }
                }
                _ => self.unknown_setting(s, &["errors", "optimizer", "plateau", "clamp_min"], "the `learn` block"),
            }
        }
        (self.diags.len() == before).then_some(learning)
    }

    #[allow(clippy::too_many_arguments)]
    fn protocol(
        &mut self,
        run: Option<&ast::RunDecl>,
        dt: Option<f64>,
        symbols: &Symbols,
        consts: &Consts,
        pop_neuron: &[Option<usize>],
        neurons: &[Option<NeuronType>],
        projections: &[Option<Projection>],
        datasets: &[Option<Dataset>],
    ) -> Option<Protocol> {
        let before = self.diags.len();
        let run = run?;
        let mut proto = Protocol {
            dt: dt.unwrap_or(f64::NAN),
            batch: 1,
            seed: 0,
            schedule: Schedule::Parallel,
            integrator: Integrator::Euler,
            items: Vec::new(),
            records: Vec::new(),
            checkpoint_every: None,
            readout: None,
            metrics: Vec::new(),
        };
        let ctx = ProtoCtx {
            symbols,
            consts,
            pop_neuron,
            neurons,
            projections,
            datasets,
        };
        let mut top_phase: Vec<&ast::RunItem> = Vec::new();
        for item in &run.items {
            match item {
                ast::RunItem::Setting(s) => match s.key.node.as_str() {
                    "dt" => {}
                    "batch" => {
                        if let Some(b) = self.ok(single_value(s).and_then(|v| eval_count(v, consts, "the batch size")))
                        {
                            proto.batch = b;
                        }
                    }
                    "seed" => {
                        if let Some(v) = self.ok(single_value(s).and_then(|v| seed_value(v, consts))) {
                            proto.seed = v;
                        }
                    }
                    "schedule" => match self.ok(single_value(s).and_then(|v| word(v, &["parallel", "sequential"]))) {
                        Some("sequential") => proto.schedule = Schedule::Sequential,
                        Some(_) => proto.schedule = Schedule::Parallel,
                        None => {}
                    },
                    "integrator" => match self.ok(single_value(s).and_then(|v| word(v, &["euler", "exponential"]))) {
                        Some("exponential") => proto.integrator = Integrator::Exponential,
                        Some(_) => proto.integrator = Integrator::Euler,
                        None => {}
                    },
                    "checkpoint" => {
                        proto.checkpoint_every =
                            self.ok(single_value(s).and_then(|v| eval_count(v, consts, "the checkpoint interval")))
                    }
                    "readout" => proto.readout = self.ok(single_value(s).and_then(|v| readout(v, &ctx))),
                    "metrics" => {
                        for v in &s.values {
                            if let Some(m) = self.ok(word(v, &["loss", "accuracy"])) {
                                proto.metrics.push(m.to_string());
                            }
                        }
                    }
                    "steps" | "duration" | "data" | "learn" => top_phase.push(item),
                    _ if symbols.get(&s.key.node).is_some_and(|x| x.kind == SymKind::Const) => top_phase.push(item),
                    _ => self.unknown_setting(
                        s,
                        &[
                            "dt",
                            "batch",
                            "seed",
                            "schedule",
                            "integrator",
                            "checkpoint",
                            "readout",
                            "metrics",
                            "steps",
                            "duration",
                            "data",
                            "learn",
                        ],
                        "the `run` block",
                    ),
                },
                ast::RunItem::Record { .. } => {
                    if let Some(r) = self.record(item, &ctx) {
                        proto.records.push(r);
                    }
                }
                ast::RunItem::Phase { .. } | ast::RunItem::Repeat { .. } => {
                    if let Some(p) = self.protocol_item(item, &ctx, dt) {
                        proto.items.push(p);
                    }
                }
            }
        }
        if let Some(b) = self.valid_override("batch") {
            proto.batch = b as usize;
        }
        if let Some(seed) = self.valid_override("seed") {
            proto.seed = seed as u64;
        }
        if !top_phase.is_empty() {
            if !proto.items.is_empty() {
                self.err(
                    Diagnostic::error(
                        "E0414",
                        "a `run` block either has phases or a single `steps`/`duration`, not both",
                        top_phase[0].span(),
                    )
                    .with_label("move this into a `phase`"),
                );
            } else if let Some(p) = self.phase("run", &top_phase, run.span, &ctx, dt) {
                proto.items.push(ProtocolItem::Phase(p));
            }
        }
        if proto.items.is_empty() && self.diags.len() == before {
            self.err(
                Diagnostic::error(
                    "E0602",
                    "the run protocol never runs: no `steps`, `duration` or phase",
                    run.span,
                )
                .with_label("`run` block without a length")
                .with_help("add `steps 1000`, `duration 10`, or `phase train { … }`"),
            );
        }
        (self.diags.len() == before).then_some(proto)
    }

    fn protocol_item(&mut self, item: &ast::RunItem, ctx: &ProtoCtx, dt: Option<f64>) -> Option<ProtocolItem> {
        match item {
            ast::RunItem::Phase { name, items, span } => {
                let mut settings: Vec<&ast::RunItem> = Vec::new();
                for i in items {
                    match i {
                        ast::RunItem::Setting(_) => settings.push(i),
                        other => {
                            self.err(
                                Diagnostic::error("E0414", "a phase holds settings only", other.span())
                                    .with_label("not allowed inside a phase")
                                    .with_help("put `record`, `phase` and `repeat` in the `run` block"),
                            );
                        }
                    }
                }
                self.phase(&name.node, &settings, *span, ctx, dt)
                    .map(ProtocolItem::Phase)
            }
            ast::RunItem::Repeat { count, items, .. } => {
                let count = self.ok(eval_count(count, ctx.consts, "a repeat count"));
                let inner: Vec<ProtocolItem> = items
                    .iter()
                    .filter_map(|i| match i {
                        ast::RunItem::Phase { .. } | ast::RunItem::Repeat { .. } => self.protocol_item(i, ctx, dt),
                        other => {
                            self.err(
                                Diagnostic::error("E0414", "`repeat` holds phases only", other.span())
                                    .with_label("not a phase"),
                            );
                            None
                        }
                    })
                    .collect();
                Some(ProtocolItem::Repeat {
                    count: count?,
                    items: inner,
                })
            }
            _ => None,
        }
    }

    fn phase(
        &mut self,
        name: &str,
        items: &[&ast::RunItem],
        span: Span,
        ctx: &ProtoCtx,
        dt: Option<f64>,
    ) -> Option<Phase> {
        let before = self.diags.len();
        let mut duration = None;
        let mut learn = true;
        let mut overrides = Vec::new();
        let mut param_overrides = Vec::new();
        for item in items {
            let ast::RunItem::Setting(s) = item else { continue };
            let set_duration = |this: &mut Self, d: Duration| {
                if duration.is_some() {
                    this.err(
                        Diagnostic::error("E0201", "a phase has one length: `steps`, `duration` or `data`", s.span)
                            .with_label("second length"),
                    );
                }
                Some(d)
            };
            match s.key.node.as_str() {
                "steps" => {
                    if let Some(n) = self.ok(single_value(s).and_then(|v| eval_count(v, ctx.consts, "a step count"))) {
                        duration = set_duration(self, Duration::Steps(n));
                    }
                }
                "duration" => {
                    let Some(t) = self.ok(single_value(s).and_then(|v| eval_num(v, ctx.consts))) else {
                        continue;
                    };
                    let Some(dt) = dt else { continue };
                    let steps = (t / dt).round();
                    if t <= 0.0 || steps < 1.0 {
                        self.err(
                            Diagnostic::error("E0501", "a duration must last at least one step", s.values[0].span)
                                .with_label(format!("{t} time units at dt = {dt}")),
                        );
                    } else if ((steps * dt - t) / t).abs() > 1e-9 {
                        self.err(
                            Diagnostic::error(
                                "E0506",
                                format!("duration {t} is not a whole number of steps of dt = {dt}"),
                                s.values[0].span,
                            )
                            .with_label(format!("{} steps", t / dt)),
                        );
                    } else {
                        duration = set_duration(self, Duration::Steps(steps as usize));
                    }
                }
                "data" => {
                    let Some(v) = self.ok(single_value(s)) else { continue };
                    match data_split(v, ctx) {
                        Ok(d) => duration = set_duration(self, d),
                        Err(d) => self.err(d),
                    }
                }
                "override" => {
                    if let Some(o) = self.ok(param_override(s, ctx)) {
                        param_overrides.push(o);
                    }
                }
                "learn" => match self.ok(single_value(s).and_then(|v| word(v, &["on", "off"]))) {
                    Some("off") => learn = false,
                    Some(_) => learn = true,
                    None => {}
                },
                key => match ctx.symbols.get(key) {
                    Some(sym) if sym.kind == SymKind::Const => {
                        if let Some(v) = self.ok(single_value(s).and_then(|v| eval_num(v, ctx.consts))) {
                            overrides.push((sym.index, v));
                        }
                    }
                    _ => {
                        let mut known = vec!["steps", "duration", "data", "learn", "override"];
                        known.extend(ctx.symbols.names_of(SymKind::Const));
                        self.unknown_setting(s, &known, "a phase");
                    }
                },
            }
        }
        if self.diags.len() > before {
            return None;
        }
        let Some(duration) = duration else {
            self.err(
                Diagnostic::error("E0602", format!("phase `{name}` has no length"), span)
                    .with_label("phase without `steps`, `duration` or `data`"),
            );
            return None;
        };
        Some(Phase {
            name: name.to_string(),
            duration,
            learn,
            overrides,
            param_overrides,
            span,
        })
    }

    fn record(&mut self, item: &ast::RunItem, ctx: &ProtoCtx) -> Option<Record> {
        let ast::RunItem::Record { targets, every, span } = item else {
            return None;
        };
        let every = match every {
            Some(e) => self.ok(eval_count(e, ctx.consts, "a record interval"))?,
            None => 1,
        };
        let mut out = Vec::new();
        for t in targets {
            match recorded(t, ctx) {
                Ok(r) => out.push(r),
                Err(d) => self.err(d),
            }
        }
        (out.len() == targets.len()).then_some(Record {
            targets: out,
            every,
            span: *span,
        })
    }
}

/// Read-only context for checking the run protocol.
struct ProtoCtx<'a> {
    symbols: &'a Symbols,
    consts: &'a Consts<'a>,
    pop_neuron: &'a [Option<usize>],
    neurons: &'a [Option<NeuronType>],
    projections: &'a [Option<Projection>],
    datasets: &'a [Option<Dataset>],
}

impl ProtoCtx<'_> {
    fn pop_var(&self, parts: &[Ident], span: Span) -> Result<(usize, NeuronVar), Diagnostic> {
        let name = &parts[0];
        let sym = self.symbols.get(&name.node);
        match sym {
            Some(s) if s.kind == SymKind::Population => {
                let nt = self.pop_neuron[s.index]
                    .and_then(|n| self.neurons[n].as_ref())
                    .ok_or_else(|| Diagnostic::error("E0000", "", span))?;
                let var = match parts.get(1) {
                    Some(m) => neuron_member(nt, m, &name.node)?,
                    None => NeuronVar::Def(nt.rate),
                };
                Ok((s.index, var))
            }
            Some(s) => Err(Diagnostic::error(
                "E0419",
                format!("expected a population, but `{}` is {}", name.node, s.kind.article()),
                name.span,
            )
            .with_label("not a population")
            .with_secondary(s.span, "defined here")),
            None => Err(diag::unknown_name(
                "population",
                &name.node,
                name.span,
                self.symbols.names_of(SymKind::Population),
            )),
        }
    }
}

fn recorded(t: &ast::Expr, ctx: &ProtoCtx) -> Result<Recorded, Diagnostic> {
    let ExprKind::Path(parts) = &t.node else {
        return Err(Diagnostic::error(
            "E0414",
            "record a population variable (`y.r`), an input, `weights` or `projection.W`",
            t.span,
        )
        .with_label("not recordable"));
    };
    if parts.len() == 1 && parts[0].node == "weights" {
        return Ok(Recorded::AllWeights);
    }
    match ctx.symbols.get(&parts[0].node) {
        Some(s) if s.kind == SymKind::Input && parts.len() == 1 => Ok(Recorded::Input(s.index)),
        Some(s) if s.kind == SymKind::Projection => match parts.get(1).map(|p| p.node.as_str()) {
            None | Some("W") if parts.len() <= 2 => {
                if ctx.projections[s.index].is_none() {
                    return Err(Diagnostic::error("E0000", "", t.span));
                }
                Ok(Recorded::Weights(s.index))
            }
            _ => Err(
                Diagnostic::error("E0208", "a projection records its weights: `name.W`", t.span)
                    .with_label("unknown member"),
            ),
        },
        _ if parts.len() > 2 => Err(Diagnostic::error(
            "E0208",
            "a path has at most two parts (`population.variable`)",
            t.span,
        )),
        _ => ctx.pop_var(parts, t.span).map(|(p, v)| Recorded::PopVar(p, v)),
    }
}

/// `override pop.param, value`: a population parameter replaced for one phase.
fn param_override(s: &Setting, ctx: &ProtoCtx) -> Result<(usize, usize, f64), Diagnostic> {
    let [target, value] = s.values.as_slice() else {
        return Err(Diagnostic::error(
            "E0211",
            "`override` takes a parameter and a value: `override h.tau_m, 1`",
            s.span,
        )
        .with_label("expected two values"));
    };
    let ExprKind::Path(parts) = &target.node else {
        return Err(Diagnostic::error(
            "E0414",
            "expected a population parameter such as `h.tau_m`",
            target.span,
        )
        .with_label("not a parameter"));
    };
    if parts.len() != 2 {
        return Err(Diagnostic::error(
            "E0414",
            "expected a population parameter such as `h.tau_m`",
            target.span,
        )
        .with_label("not a parameter"));
    }
    let (pop, var) = ctx.pop_var(parts, target.span)?;
    let NeuronVar::Param(param) = var else {
        return Err(Diagnostic::error(
            "E0405",
            format!(
                "`{}` is not a parameter; only parameters can be overridden",
                parts[1].node
            ),
            parts[1].span,
        )
        .with_label("not a parameter"));
    };
    Ok((pop, param, eval_num(value, ctx.consts)?))
}

fn readout(v: &ast::Expr, ctx: &ProtoCtx) -> Result<Readout, Diagnostic> {
    let bad = || {
        Diagnostic::error(
            "E0414",
            "a read-out is `argmax(sample_sum(pop.var))` or `argmax(last(pop.var))`",
            v.span,
        )
        .with_label("unknown read-out")
    };
    let ExprKind::Call { func, args } = &v.node else {
        return Err(bad());
    };
    if func.node != "argmax" || args.len() != 1 {
        return Err(bad());
    }
    let ExprKind::Call {
        func: inner,
        args: inner_args,
    } = &args[0].value.node
    else {
        return Err(bad());
    };
    if inner_args.len() != 1 {
        return Err(bad());
    }
    let ExprKind::Path(parts) = &inner_args[0].value.node else {
        return Err(bad());
    };
    if parts.len() > 2 {
        return Err(bad());
    }
    let (p, var) = ctx.pop_var(parts, inner_args[0].value.span)?;
    match inner.node.as_str() {
        "sample_sum" => Ok(Readout::ArgmaxOfSum(p, var)),
        "last" => Ok(Readout::ArgmaxOfLast(p, var)),
        _ => Err(bad()),
    }
}

fn data_split(v: &ast::Expr, ctx: &ProtoCtx) -> Result<Duration, Diagnostic> {
    let bad = || {
        Diagnostic::error("E0414", "a data phase reads `dataset.train` or `dataset.test`", v.span)
            .with_label("expected a dataset split")
    };
    let ExprKind::Path(parts) = &v.node else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let sym = match ctx.symbols.get(&parts[0].node) {
        Some(s) if s.kind == SymKind::Dataset => s,
        Some(s) => {
            return Err(Diagnostic::error(
                "E0419",
                format!("expected a dataset, but `{}` is {}", parts[0].node, s.kind.article()),
                parts[0].span,
            )
            .with_label("not a dataset"));
        }
        None => {
            return Err(diag::unknown_name(
                "dataset",
                &parts[0].node,
                parts[0].span,
                ctx.symbols.names_of(SymKind::Dataset),
            ));
        }
    };
    let test = match parts[1].node.as_str() {
        "train" => false,
        "test" => true,
        other => {
            return Err(diag::unknown_name(
                "dataset split",
                other,
                parts[1].span,
                ["train", "test"],
            ));
        }
    };
    if test
        && let Some(Some(ds)) = ctx.datasets.get(sym.index)
        && ds
            .fields
            .iter()
            .any(|f| matches!(f.source, DataSource::Array { test: None, .. }))
    {
        return Err(Diagnostic::error(
            "E0404",
            format!("dataset `{}` has no test split", parts[0].node),
            v.span,
        )
        .with_label("test split requested")
        .with_help("give each field a test array: `array(\"x\", test: \"x_test\")`"));
    }
    Ok(Duration::Data {
        dataset: sym.index,
        test,
    })
}

/// Settings at the top level of a `run` block (where `dt` lives).
fn flat_settings(items: &[ast::RunItem]) -> Vec<&Setting> {
    items
        .iter()
        .filter_map(|i| match i {
            ast::RunItem::Setting(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The one value of a setting.
fn single_value(s: &Setting) -> Result<&ast::Expr, Diagnostic> {
    match s.values.as_slice() {
        [v] => Ok(v),
        _ => Err(
            Diagnostic::error("E0211", format!("`{}` takes one value", s.key.node), s.span)
                .with_label(format!("{} values given", s.values.len())),
        ),
    }
}

fn string_value(v: &ast::Expr) -> Result<String, Diagnostic> {
    match &v.node {
        ExprKind::Str(s) if !s.is_empty() => Ok(s.clone()),
        _ => {
            Err(Diagnostic::error("E0414", "expected a file name in double quotes", v.span).with_label("not a string"))
        }
    }
}

/// A bare word from `allowed` (`present stream`, `learn off`).
fn word(v: &ast::Expr, allowed: &[&'static str]) -> Result<&'static str, Diagnostic> {
    if let ExprKind::Path(p) = &v.node
        && p.len() == 1
        && let Some(w) = allowed.iter().find(|a| **a == p[0].node)
    {
        return Ok(w);
    }
    let shown = match &v.node {
        ExprKind::Path(p) => p.iter().map(|x| x.node.as_str()).collect::<Vec<_>>().join("."),
        _ => String::new(),
    };
    let mut d = Diagnostic::error("E0414", format!("expected one of: {}", allowed.join(", ")), v.span)
        .with_label("not an allowed value");
    if let Some(c) = closest(&shown, allowed.iter().copied()) {
        d = d.with_help(format!("did you mean `{c}`?"));
    }
    Err(d)
}

fn seed_value(v: &ast::Expr, consts: &Consts) -> Result<u64, Diagnostic> {
    let x = eval_num(v, consts)?;
    if x < 0.0 || x.fract() != 0.0 || x > 9.007e15 {
        return Err(
            Diagnostic::error("E0506", "a seed must be a whole number ≥ 0", v.span).with_label(format!("this is {x}"))
        );
    }
    Ok(x as u64)
}

/// Named numeric arguments with defaults (`adam(lr: 1e-3, beta1: 0.9)`); `None` means required.
fn named_number_args(
    func: &Ident,
    args: &[Arg],
    params: &[(&str, Option<f64>)],
    consts: &Consts,
) -> Result<Vec<f64>, Diagnostic> {
    let names: Vec<&str> = params.iter().map(|p| p.0).collect();
    let mut out: Vec<Option<f64>> = params.iter().map(|p| p.1).collect();
    let mut given = vec![false; params.len()];
    for (k, a) in args.iter().enumerate() {
        let i = match &a.name {
            None if k < params.len() => k,
            None => return Err(diag::wrong_arity(func, args.len(), params.len())),
            Some(n) => names.iter().position(|p| *p == n.node).ok_or_else(|| {
                let d = Diagnostic::error(
                    "E0212",
                    format!("`{}` has no parameter named `{}`", func.node, n.node),
                    n.span,
                )
                .with_label("unknown argument name")
                .with_note(format!("parameters: {}", names.join(", ")));
                match closest(&n.node, names.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d,
                }
            })?,
        };
        if std::mem::replace(&mut given[i], true) {
            return Err(
                Diagnostic::error("E0212", format!("argument `{}` given twice", names[i]), a.value.span)
                    .with_label("given again"),
            );
        }
        out[i] = Some(eval_num(&a.value, consts)?);
    }
    out.iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| {
                Diagnostic::error(
                    "E0211",
                    format!("`{}` is missing argument `{}`", func.node, names[i]),
                    func.span,
                )
                .with_label(format!("needs `{}: …`", names[i]))
            })
        })
        .collect()
}

fn distribution(v: &ast::Expr, consts: &Consts) -> Result<Distribution, Diagnostic> {
    match &v.node {
        ExprKind::Path(p) if p.len() == 1 && p[0].node == "fan_in_uniform" => Ok(Distribution::FanInUniform),
        ExprKind::Call { func, args } if func.node == "uniform" => {
            let bound = bind(func, args, &["lo", "hi"])?;
            let (lo, hi) = (eval_num(bound[0], consts)?, eval_num(bound[1], consts)?);
            if lo > hi {
                return Err(
                    Diagnostic::error("E0507", format!("empty range: uniform({lo}, {hi})"), v.span)
                        .with_label("lower bound above upper bound"),
                );
            }
            Ok(Distribution::Uniform { lo, hi })
        }
        ExprKind::Call { func, args } if func.node == "normal" => {
            let bound = bind(func, args, &["mean", "std"])?;
            let (mean, std) = (eval_num(bound[0], consts)?, eval_num(bound[1], consts)?);
            if std < 0.0 {
                return Err(Diagnostic::error(
                    "E0508",
                    format!("a standard deviation cannot be negative ({std})"),
                    bound[1].span,
                )
                .with_label("negative std"));
            }
            Ok(Distribution::Normal { mean, std })
        }
        _ => Err(Diagnostic::error(
            "E0414",
            "expected a distribution: `uniform(lo, hi)`, `normal(mean, std)` or `fan_in_uniform`",
            v.span,
        )
        .with_label("not a distribution")),
    }
}

fn is_distribution(v: &ast::Expr) -> bool {
    match &v.node {
        ExprKind::Path(p) => p.len() == 1 && p[0].node == "fan_in_uniform",
        ExprKind::Call { func, .. } => func.node == "uniform" || func.node == "normal",
        _ => false,
    }
}

/// A parameter value for `count` neurons: number, list of `count`, random draw or file.
fn param_init(v: &ast::Expr, consts: &Consts, count: usize) -> Result<Init, Diagnostic> {
    if is_distribution(v) {
        let d = distribution(v, consts)?;
        if d == Distribution::FanInUniform {
            return Err(Diagnostic::error(
                "E0414",
                "`fan_in_uniform` initialises weights, not neuron parameters",
                v.span,
            )
            .with_label("no fan-in here"));
        }
        return Ok(Init::Random(d));
    }
    if let ExprKind::Call { func, args } = &v.node
        && func.node == "file"
    {
        diag::expect_args(func, args, 1)?;
        return Ok(Init::File(string_value(&args[0].value)?));
    }
    let (shape, data) = eval::flatten(&eval::eval(v, consts)?, v.span)?;
    check_finite(&data, v.span)?;
    match shape.as_slice() {
        [] => Ok(Init::Const(data[0])),
        [n] if *n == count => Ok(Init::Values(data)),
        [n] => Err(Diagnostic::error(
            "E0302",
            format!("expected {count} values, one per neuron, but the list has {n}"),
            v.span,
        )
        .with_label(format!("{n} values"))),
        _ => Err(Diagnostic::error(
            "E0305",
            "a neuron parameter takes a number or a list, not a matrix",
            v.span,
        )
        .with_label("matrix")),
    }
}

fn check_finite(data: &[f64], span: Span) -> Result<(), Diagnostic> {
    if data.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(Diagnostic::error("E0509", "this value is not a finite number", span).with_label("infinity or NaN"))
    }
}

/// A weight initialiser for a `rows × cols` matrix (`cols = 0` for a vector of `rows`).
fn weight_init(
    v: &ast::Expr,
    consts: &Consts,
    rows: usize,
    cols: Option<usize>,
    what: &str,
) -> Result<Init, Diagnostic> {
    if is_distribution(v) {
        return Ok(Init::Random(distribution(v, consts)?));
    }
    if let ExprKind::Call { func, args } = &v.node
        && func.node == "file"
    {
        diag::expect_args(func, args, 1)?;
        return Ok(Init::File(string_value(&args[0].value)?));
    }
    let (shape, data) = eval::flatten(&eval::eval(v, consts)?, v.span)?;
    check_finite(&data, v.span)?;
    let expected: Vec<usize> = match cols {
        Some(c) => vec![rows, c],
        None => vec![rows],
    };
    if shape.is_empty() {
        return Ok(Init::Const(data[0]));
    }
    if shape != expected {
        let fmt = |s: &[usize]| s.iter().map(usize::to_string).collect::<Vec<_>>().join(" × ");
        return Err(Diagnostic::error(
            "E0305",
            format!(
                "{what} has shape {}, but the projection needs {}",
                fmt(&shape),
                fmt(&expected)
            ),
            v.span,
        )
        .with_label(format!("{} literal", fmt(&shape)))
        .with_note("a weight matrix has one row per postsynaptic and one column per presynaptic neuron"));
    }
    Ok(Init::Values(data))
}

/// The elementwise function of `dense(…, map: f)`: a one-argument built-in or user function.
fn connectivity_map(v: &ast::Expr, symbols: &Symbols, fn_arity: &[usize]) -> Result<Callee, Diagnostic> {
    let bad = || {
        Diagnostic::error("E0414", "`map` takes the name of a one-argument function", v.span)
            .with_label("expected a function name such as `tanh`")
    };
    let ExprKind::Path(p) = &v.node else { return Err(bad()) };
    if p.len() != 1 {
        return Err(bad());
    }
    let name = p[0].node.as_str();
    if let Some(b) = Builtin::from_name(name) {
        if b.is_elementwise() && b.signature().params.len() == 1 {
            return Ok(Callee::Builtin(b));
        }
        return Err(bad());
    }
    match symbols.get(name) {
        Some(s) if s.kind == SymKind::Function && fn_arity[s.index] == 1 => Ok(Callee::User(s.index)),
        Some(s) if s.kind == SymKind::Function => Err(bad()),
        _ => Err(diag::unknown_name(
            "function",
            name,
            v.span,
            symbols
                .names_of(SymKind::Function)
                .chain(crate::builtins::BUILTINS.iter().map(|b| b.name)),
        )),
    }
}

fn connectivity(
    kind: &ast::Expr,
    consts: &Consts,
    shape: (usize, usize),
    fn_arity: &[usize],
) -> Result<Connectivity, Diagnostic> {
    let (rows, cols) = shape;
    let square = |name: &str| -> Result<(), Diagnostic> {
        if rows != cols {
            return Err(Diagnostic::error(
                "E0304",
                format!("`{name}` connects populations of equal size, but these have {cols} and {rows} neurons"),
                kind.span,
            )
            .with_label(format!("{cols} → {rows}")));
        }
        Ok(())
    };
    match &kind.node {
        ExprKind::Path(p) if p.len() == 1 && p[0].node == "identity" => {
            square("identity")?;
            Ok(Connectivity::Identity)
        }
        ExprKind::Path(p) if p.len() == 1 && p[0].node == "dense" => Ok(Connectivity::Dense {
            map: None,
            init: Init::Random(Distribution::FanInUniform),
            bias: None,
            synapse: None,
        }),
        ExprKind::Call { func, args } if func.node == "dense" => {
            let mut init = Init::Random(Distribution::FanInUniform);
            let mut bias = None;
            let mut map = None;
            let mut synapse = None;
            for (k, a) in args.iter().enumerate() {
                match (a.name.as_ref().map(|n| n.node.as_str()), k) {
                    (Some("init"), _) | (None, 0) => {
                        init = weight_init(&a.value, consts, rows, Some(cols), "the weight matrix")?
                    }
                    (Some("bias"), _) | (None, 1) => {
                        bias = Some(weight_init(&a.value, consts, rows, None, "the bias")?)
                    }
                    (Some("map"), _) => map = Some(connectivity_map(&a.value, consts.symbols, fn_arity)?),
                    (Some("synapse"), _) => {
                        synapse = Some(filter_time_constant(&a.value, consts)?).filter(|&tau| tau > 0.0)
                    }
                    (Some(other), _) => {
                        let span = a.name.as_ref().map_or(a.value.span, |n| n.span);
                        let d = Diagnostic::error("E0212", format!("`dense` has no parameter named `{other}`"), span)
                            .with_label("unknown argument name")
                            .with_note("parameters: init, bias, map, synapse");
                        return Err(match closest(other, ["init", "bias", "map", "synapse"]) {
                            Some(s) => d.with_help(format!("did you mean `{s}`?")),
                            None => d,
                        });
                    }
                    (None, _) => return Err(diag::wrong_arity(func, args.len(), 2)),
                }
            }
            Ok(Connectivity::Dense {
                init,
                bias,
                map,
                synapse,
            })
        }
        ExprKind::Call { func, args } if func.node == "diagonal" => {
            square("diagonal")?;
            let bound = bind(func, args, &["init"])?;
            Ok(Connectivity::Diagonal {
                init: weight_init(bound[0], consts, rows, None, "the diagonal")?,
            })
        }
        _ => Err(diag::unknown_name(
            "connectivity",
            &match &kind.node {
                ExprKind::Path(p) => p[0].node.clone(),
                ExprKind::Call { func, .. } => func.node.clone(),
                _ => "?".into(),
            },
            kind.span,
            ["dense", "diagonal", "identity"],
        )
        .with_note("a projection is `dense(init: …, bias: …)`, `diagonal(init: …)` or `identity`")),
    }
}

fn data_source(v: &ast::Expr, consts: &Consts) -> Result<DataSource, Diagnostic> {
    let ExprKind::Call { func, args } = &v.node else {
        return Err(Diagnostic::error(
            "E0414",
            "a field is `array(\"key\", test: \"key_test\")` or `columns(start, end)`",
            v.span,
        )
        .with_label("unknown field source"));
    };
    match func.node.as_str() {
        "array" => {
            let mut train = None;
            let mut test = None;
            for (k, a) in args.iter().enumerate() {
                match (a.name.as_ref().map(|n| n.node.as_str()), k) {
                    (None, 0) => train = Some(string_value(&a.value)?),
                    (Some("test"), _) => test = Some(string_value(&a.value)?),
                    _ => {
                        return Err(Diagnostic::error(
                            "E0212",
                            "`array` takes a key and `test: \"key\"`",
                            a.value.span,
                        )
                        .with_label("unexpected argument"));
                    }
                }
            }
            let train = train.ok_or_else(|| diag::wrong_arity(func, 0, 1))?;
            Ok(DataSource::Array { train, test })
        }
        "columns" => {
            let bound = bind(func, args, &["start", "end"])?;
            let start = eval_num(bound[0], consts)?;
            let end = eval_num(bound[1], consts)?;
            if start < 0.0 || start.fract() != 0.0 || end.fract() != 0.0 || end <= start {
                return Err(Diagnostic::error(
                    "E0507",
                    format!("`columns({start}, {end})` is not a range of whole column numbers"),
                    v.span,
                )
                .with_label("need 0 ≤ start < end"));
            }
            Ok(DataSource::Columns {
                start: start as usize,
                end: end as usize,
            })
        }
        other => Err(diag::unknown_name(
            "field source",
            other,
            func.span,
            ["array", "columns"],
        )),
    }
}

/// The length of a list inside `source` that does not match `size` (lists broadcast per channel).
fn list_len_mismatch(source: &Expr, size: usize) -> Option<usize> {
    let mut bad = None;
    visit(source, &mut |e| {
        if let Expr::List(items) = e
            && items.len() != size
            && items.len() != 1
        {
            bad = Some(items.len());
        }
    });
    bad
}

/// Collects the τ of every `D[τ]`/`I[τ]` in a resolved definition with the source span of τ.
fn collect_taus(v: &Expr, src: &ast::Expr, out: &mut Vec<(Expr, Span)>) {
    let mut spans = Vec::new();
    ast_taus(src, &mut spans);
    let mut k = 0;
    visit(v, &mut |e| {
        if let Expr::D(tau, _) | Expr::I(tau, _) = e {
            let span = spans.get(k).copied().unwrap_or(src.span);
            k += 1;
            if !out.iter().any(|(t, _)| t == tau.as_ref()) {
                out.push((tau.as_ref().clone(), span));
            }
        }
    });
}

fn ast_taus(e: &ast::Expr, out: &mut Vec<Span>) {
    match &e.node {
        ExprKind::D { tau, arg } | ExprKind::I { tau, arg } => {
            out.push(tau.span);
            ast_taus(tau, out);
            ast_taus(arg, out);
        }
        ExprKind::Neg(a) => ast_taus(a, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            ast_taus(lhs, out);
            ast_taus(rhs, out);
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| ast_taus(&a.value, out)),
        ExprKind::List(items) => items.iter().for_each(|a| ast_taus(a, out)),
        ExprKind::Number(_) | ExprKind::Str(_) | ExprKind::Path(_) => {}
    }
}

/// Evaluates a time-constant expression for neuron `k`; `None` if it depends on a random draw.
/// The first neuron of every run over which no parameter changes, in order: a time constant
/// computed from the parameters takes one value per run, so checking these neurons checks all,
/// and the first bad one is the first bad neuron. Parameters listed value by value start a run
/// at each neuron; the cost follows the source, not the population size.
fn run_starts(params: &[ParamValue], size: usize) -> Vec<usize> {
    let mut starts = std::collections::BTreeSet::from([0]);
    for p in params {
        let mut start = 0;
        for (count, init) in &p.segments {
            match init {
                Init::Values(_) => starts.extend(start..start + count),
                _ => {
                    starts.insert(start);
                }
            }
            start += count;
        }
    }
    starts.into_iter().filter(|&k| k < size).collect()
}

fn eval_per_neuron(tau: &Expr, params: &[ParamValue], k: usize) -> Option<f64> {
    Some(match tau {
        Expr::Num(v) => *v,
        Expr::Ref(Ref::Own(NeuronVar::Param(i))) => {
            let mut start = 0;
            for (count, init) in &params[*i].segments {
                if k < start + count {
                    return match init {
                        Init::Const(v) => Some(*v),
                        Init::Values(vs) => vs.get(k - start).copied(),
                        Init::Random(_) | Init::File(_) => None,
                    };
                }
                start += count;
            }
            return None;
        }
        Expr::Neg(a) => -eval_per_neuron(a, params, k)?,
        Expr::Binary(op, a, b) => eval::num_op(*op, eval_per_neuron(a, params, k)?, eval_per_neuron(b, params, k)?),
        Expr::Call(Callee::Builtin(b), args) if b.is_elementwise() => {
            let vals: Option<Vec<f64>> = args.iter().map(|a| eval_per_neuron(a, params, k)).collect();
            eval::apply(*b, &vals?)
        }
        _ => return None,
    })
}

/// The shape of an energy sub-expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Scalar,
    Vector(usize),
    Labels,
    Populations,
}

impl Shape {
    fn describe(self) -> String {
        match self {
            Shape::Scalar => "a scalar".into(),
            Shape::Vector(n) => format!("a vector of {n}"),
            Shape::Labels => "class labels".into(),
            Shape::Populations => "a population".into(),
        }
    }
}

fn energy_shape(
    src: &ast::Expr,
    e: &Expr,
    pops: &[Option<Population>],
    inputs: &[Option<Input>],
) -> Result<Shape, Diagnostic> {
    shape_of(e, src.span, pops, inputs)
}

fn shape_of(e: &Expr, span: Span, pops: &[Option<Population>], inputs: &[Option<Input>]) -> Result<Shape, Diagnostic> {
    let poisoned = || Diagnostic::error("E0000", "", span);
    let sh = |x: &Expr| shape_of(x, span, pops, inputs);
    Ok(match e {
        Expr::Num(_) | Expr::Ref(Ref::Const(_) | Ref::Dt | Ref::Time) => Shape::Scalar,
        Expr::Str(_) | Expr::List(_) => Shape::Scalar,
        Expr::Ref(Ref::PopVar(p, _)) => Shape::Vector(pops[*p].as_ref().ok_or_else(poisoned)?.size),
        Expr::Ref(Ref::Input(i)) => Shape::Vector(inputs[*i].as_ref().ok_or_else(poisoned)?.size),
        Expr::Ref(Ref::DataField(..)) => Shape::Labels,
        Expr::Ref(Ref::Population(_)) => Shape::Populations,
        Expr::Ref(_) => Shape::Scalar,
        Expr::Neg(a) => sh(a)?,
        Expr::D(_, a) | Expr::I(_, a) => sh(a)?,
        Expr::Binary(op, a, b) => {
            let (x, y) = (sh(a)?, sh(b)?);
            match (x, y) {
                (Shape::Scalar, s) | (s, Shape::Scalar) if !matches!(s, Shape::Labels | Shape::Populations) => s,
                (Shape::Vector(n), Shape::Vector(m)) if n == m => x,
                _ => {
                    return Err(Diagnostic::error(
                        "E0306",
                        format!("`{}` between {} and {}", op.symbol(), x.describe(), y.describe()),
                        span,
                    )
                    .with_label("incompatible shapes in the energy"));
                }
            }
        }
        Expr::Call(Callee::Builtin(b), args) => match b {
            Builtin::Mismatch => Shape::Scalar,
            Builtin::Sum => {
                let s = sh(&args[0])?;
                if matches!(s, Shape::Labels | Shape::Populations) {
                    return Err(Diagnostic::error("E0306", format!("`sum` of {}", s.describe()), span)
                        .with_label("cannot sum this"));
                }
                Shape::Scalar
            }
            Builtin::Mse => {
                let (x, y) = (sh(&args[0])?, sh(&args[1])?);
                let ok = match (x, y) {
                    (Shape::Vector(n), Shape::Vector(m)) => n == m,
                    (Shape::Vector(_), Shape::Scalar | Shape::Labels) => true,
                    _ => false,
                };
                if !ok {
                    return Err(Diagnostic::error(
                        "E0306",
                        format!("`mse` of {} against {}", x.describe(), y.describe()),
                        span,
                    )
                    .with_label("prediction and target must have the same size"));
                }
                Shape::Scalar
            }
            Builtin::CrossEntropy => {
                let (x, y) = (sh(&args[0])?, sh(&args[1])?);
                let ok = match (x, y) {
                    (Shape::Vector(n), Shape::Vector(m)) => n == m,
                    (Shape::Vector(_), Shape::Labels) => true,
                    _ => false,
                };
                if !ok {
                    return Err(Diagnostic::error(
                        "E0306",
                        format!("`cross_entropy` of {} against {}", x.describe(), y.describe()),
                        span,
                    )
                    .with_label("logits must be a vector; labels a dataset field or a vector of the same size"));
                }
                Shape::Scalar
            }
            _ => {
                let mut out = Shape::Scalar;
                for a in args {
                    let s = sh(a)?;
                    out = match (out, s) {
                        (Shape::Scalar, s) => s,
                        (o, Shape::Scalar) => o,
                        (Shape::Vector(n), Shape::Vector(m)) if n == m => Shape::Vector(n),
                        _ => {
                            return Err(Diagnostic::error(
                                "E0306",
                                format!("`{}` of {} and {}", b.name(), out.describe(), s.describe()),
                                span,
                            )
                            .with_label("incompatible shapes"));
                        }
                    };
                }
                out
            }
        },
        Expr::Call(Callee::User(_), args) => {
            let mut out = Shape::Scalar;
            for a in args {
                let s = sh(a)?;
                out = match (out, s) {
                    (Shape::Scalar, s) => s,
                    (o, Shape::Scalar) => o,
                    (Shape::Vector(n), Shape::Vector(m)) if n == m => Shape::Vector(n),
                    _ => {
                        return Err(Diagnostic::error(
                            "E0306",
                            format!("function call on {} and {}", out.describe(), s.describe()),
                            span,
                        )
                        .with_label("incompatible shapes"));
                    }
                };
            }
            out
        }
    })
}

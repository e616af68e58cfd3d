//! Name resolution of expressions into the IR's [`Expr`], with the kind checks that depend on
//! where an expression is written (neuron, input, energy, rule, function).

use crate::builtins::{Builtin, Context};
use crate::diag;
use crate::eval::{self, Value};
use crate::ir::{Callee, Expr, NeuronType, NeuronVar, Ref};
use crate::symbols::{SymKind, Symbols};
use gle_syntax::ast::{self, Arg, ExprKind, Ident};
use gle_syntax::{Diagnostic, Span};

/// The variables of a neuron type visible while resolving its own definitions.
pub struct NeuronScope<'s> {
    /// Parameter names.
    pub params: &'s [String],
    /// State names.
    pub states: &'s [String],
    /// Compartment names.
    pub compartments: &'s [String],
    /// Names of definitions declared so far.
    pub defs: &'s [String],
    /// Whether the expression is the type's `rate` (the one place `noise(…)` may appear).
    pub rate: bool,
}

impl NeuronScope<'_> {
    fn var(&self, name: &str) -> Option<NeuronVar> {
        let pos = |v: &[String]| v.iter().position(|n| n == name);
        pos(self.params)
            .map(NeuronVar::Param)
            .or_else(|| pos(self.states).map(NeuronVar::State))
            .or_else(|| pos(self.defs).map(NeuronVar::Def))
            .or_else(|| pos(self.compartments).map(NeuronVar::Compartment))
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .chain(self.states)
            .chain(self.defs)
            .chain(self.compartments)
            .map(String::as_str)
    }
}

/// The two sides of a projection, as seen by its plasticity rule.
pub struct RuleScope<'s> {
    /// Name of the projection.
    pub projection: &'s str,
    /// Neuron type of the presynaptic population (`None` for an input).
    pub pre: Option<&'s NeuronType>,
    /// Neuron type of the postsynaptic population.
    pub post: &'s NeuronType,
}

/// Where an expression is being resolved.
pub enum Scope<'s> {
    /// A user function body: its parameters.
    Function(&'s [String]),
    /// A neuron type's definitions.
    Neuron(NeuronScope<'s>),
    /// An input source.
    Input,
    /// The energy.
    Energy,
    /// An explicit plasticity rule.
    Rule(RuleScope<'s>),
}

impl Scope<'_> {
    fn context(&self) -> Context {
        match self {
            Scope::Function(_) => Context::Function,
            Scope::Neuron(n) if n.rate => Context::Rate,
            Scope::Neuron(_) => Context::Neuron,
            Scope::Input => Context::Input,
            Scope::Energy => Context::Energy,
            Scope::Rule(_) => Context::Rule,
        }
    }
}

/// Resolves expressions against the global symbols of one model.
pub struct Resolver<'a> {
    /// Global names.
    pub symbols: &'a Symbols,
    /// Neuron types checked so far (indexed like the symbols).
    pub neurons: &'a [Option<NeuronType>],
    /// Neuron type of each population (`None` when the population failed to check).
    pub pop_neuron: &'a [Option<usize>],
    /// Field names of each dataset.
    pub dataset_fields: &'a [Vec<String>],
    /// Parameter names of each user function.
    pub fn_params: &'a [Vec<String>],
    /// Evaluator for constant sub-expressions (`linspace`, lists).
    pub consts: &'a dyn eval::NameLookup,
}

fn var_names(n: &NeuronType) -> Vec<&str> {
    n.params
        .iter()
        .map(|p| p.name.as_str())
        .chain(n.states.iter().map(|s| s.name.as_str()))
        .chain(n.defs.iter().map(|d| d.name.as_str()))
        .chain(n.compartments.iter().map(|c| c.name.as_str()))
        .collect()
}

/// Looks up `member` among a neuron type's variables.
pub fn neuron_member(n: &NeuronType, member: &Ident, owner: &str) -> Result<NeuronVar, Diagnostic> {
    let name = member.node.as_str();
    let pos = |v: Vec<&str>| v.iter().position(|x| *x == name);
    pos(n.params.iter().map(|p| p.name.as_str()).collect())
        .map(NeuronVar::Param)
        .or_else(|| pos(n.states.iter().map(|s| s.name.as_str()).collect()).map(NeuronVar::State))
        .or_else(|| pos(n.defs.iter().map(|d| d.name.as_str()).collect()).map(NeuronVar::Def))
        .or_else(|| pos(n.compartments.iter().map(|c| c.name.as_str()).collect()).map(NeuronVar::Compartment))
        .ok_or_else(|| {
            diag::unknown_member(
                "variable",
                name,
                &format!("`{owner}` (neuron type `{}`)", n.name),
                member.span,
                var_names(n),
            )
        })
}

impl Resolver<'_> {
    /// Resolves `expr` in `scope`.
    pub fn resolve(&self, expr: &ast::Expr, scope: &Scope) -> Result<Expr, Diagnostic> {
        let ctx = scope.context();
        Ok(match &expr.node {
            ExprKind::Number(v) => Expr::Num(*v),
            ExprKind::Str(s) => Expr::Str(s.clone()),
            ExprKind::Path(parts) => self.path(parts, expr.span, scope)?,
            ExprKind::List(_) => {
                if ctx != Context::Input {
                    return Err(Diagnostic::error(
                        "E0417",
                        "lists are only allowed in constants and input sources",
                        expr.span,
                    )
                    .with_label("a list here"));
                }
                self.constant_list(expr)?
            }
            ExprKind::Neg(inner) => Expr::Neg(Box::new(self.resolve(inner, scope)?)),
            ExprKind::Binary { op, lhs, rhs } => Expr::Binary(
                *op,
                Box::new(self.resolve(lhs, scope)?),
                Box::new(self.resolve(rhs, scope)?),
            ),
            ExprKind::D { tau, arg } | ExprKind::I { tau, arg } => {
                let Scope::Neuron(_) = scope else {
                    return Err(Diagnostic::error(
                        "E0415",
                        "temporal operators are only allowed inside a neuron type",
                        expr.span,
                    )
                    .with_label("`D[τ]`/`I[τ]` used here"));
                };
                let tau_r = self.resolve(tau, scope)?;
                check_time_constant(&tau_r, tau.span)?;
                let arg_r = self.resolve(arg, scope)?;
                if matches!(expr.node, ExprKind::D { .. }) {
                    Expr::D(Box::new(tau_r), Box::new(arg_r))
                } else {
                    Expr::I(Box::new(tau_r), Box::new(arg_r))
                }
            }
            ExprKind::Call { func, args } => self.call(func, args, expr.span, scope)?,
        })
    }

    fn constant_list(&self, expr: &ast::Expr) -> Result<Expr, Diagnostic> {
        let (shape, data) = eval::flatten(&eval::eval(expr, self.consts)?, expr.span)?;
        if shape.len() > 1 {
            return Err(
                Diagnostic::error("E0305", "an input source takes a list, not a matrix", expr.span)
                    .with_label("nested list"),
            );
        }
        Ok(Expr::List(data.into_iter().map(Expr::Num).collect()))
    }

    fn call(&self, func: &Ident, args: &[Arg], span: Span, scope: &Scope) -> Result<Expr, Diagnostic> {
        let ctx = scope.context();
        let name = func.node.as_str();
        if name == "linspace" || name == "round" {
            if ctx != Context::Input {
                return Err(Diagnostic::error(
                    "E0417",
                    format!("`{name}` makes a list, which is only allowed in constants and input sources"),
                    span,
                )
                .with_label("a list here"));
            }
            let fake = ast::Expr::new(
                ExprKind::Call {
                    func: func.clone(),
                    args: args.to_vec(),
                },
                span,
            );
            let v = eval::eval(&fake, self.consts)?;
            return Ok(match v {
                Value::Num(x) => Expr::Num(x),
                Value::List(_) => self.constant_list(&fake)?,
            });
        }
        if let Some(b) = Builtin::from_name(name) {
            if !b.allowed_in(ctx) {
                return Err(Diagnostic::error(
                    "E0416",
                    format!("`{name}` can only be used {}", b.allowed_where()),
                    func.span,
                )
                .with_label("not allowed here"));
            }
            let sig = b.signature();
            if sig.variadic {
                if args.is_empty() {
                    return Err(diag::wrong_arity(func, 0, 1));
                }
                let mut out = Vec::new();
                for a in args {
                    if let Some(n) = &a.name {
                        return Err(
                            Diagnostic::error("E0212", format!("`{name}` takes no named arguments"), n.span)
                                .with_label("named argument"),
                        );
                    }
                    out.push(self.population_arg(&a.value)?);
                }
                return Ok(Expr::Call(Callee::Builtin(b), out));
            }
            let bound = bind(func, args, sig.params)?;
            let mut out: Vec<Expr> = bound.iter().map(|a| self.resolve(a, scope)).collect::<Result<_, _>>()?;
            if b == Builtin::Lowpass {
                out[1] = Expr::Num(filter_time_constant(bound[1], self.consts)?);
            }
            return Ok(Expr::Call(Callee::Builtin(b), out));
        }
        if let Some(sym) = self.symbols.get(name) {
            if sym.kind == SymKind::Function {
                if ctx == Context::Const {
                    return Err(Diagnostic::error(
                        "E0414",
                        "user functions cannot be used in constants",
                        span,
                    ));
                }
                let params: Vec<&str> = self.fn_params[sym.index].iter().map(String::as_str).collect();
                let bound = bind(func, args, &params)?;
                let out = bound.iter().map(|a| self.resolve(a, scope)).collect::<Result<_, _>>()?;
                return Ok(Expr::Call(Callee::User(sym.index), out));
            }
            return Err(Diagnostic::error(
                "E0418",
                format!("`{name}` is {}, not a function", sym.kind.article()),
                func.span,
            )
            .with_label("called here")
            .with_secondary(sym.span, "defined here"));
        }
        let candidates = crate::builtins::BUILTINS
            .iter()
            .map(|s| s.name)
            .chain(self.symbols.names_of(SymKind::Function));
        Err(diag::unknown_name("function", name, func.span, candidates))
    }

    /// An argument of `mismatch(…)`: a population name.
    fn population_arg(&self, e: &ast::Expr) -> Result<Expr, Diagnostic> {
        if let ExprKind::Path(parts) = &e.node
            && parts.len() == 1
        {
            let name = parts[0].node.as_str();
            return match self.symbols.get(name) {
                Some(s) if s.kind == SymKind::Population => Ok(Expr::Ref(Ref::Population(s.index))),
                Some(s) => Err(Diagnostic::error(
                    "E0410",
                    format!("`mismatch` takes populations, but `{name}` is {}", s.kind.article()),
                    e.span,
                )
                .with_label("not a population")),
                None => Err(diag::unknown_name(
                    "population",
                    name,
                    e.span,
                    self.symbols.names_of(SymKind::Population),
                )),
            };
        }
        Err(Diagnostic::error("E0410", "`mismatch` takes population names", e.span).with_label("not a population name"))
    }

    fn path(&self, parts: &[Ident], span: Span, scope: &Scope) -> Result<Expr, Diagnostic> {
        let first = &parts[0];
        let name = first.node.as_str();
        if parts.len() > 2 {
            return Err(
                Diagnostic::error("E0208", "a path has at most two parts (`population.variable`)", span)
                    .with_label("too many parts"),
            );
        }
        if parts.len() == 1 {
            return self.single_name(first, scope);
        }
        let member = &parts[1];
        if let Scope::Rule(rule) = scope {
            match name {
                "pre" => {
                    return match rule.pre {
                        Some(n) => Ok(Expr::Ref(Ref::Pre(Some(neuron_member(n, member, "pre")?)))),
                        None => Err(Diagnostic::error(
                            "E0208",
                            "the presynaptic side of this projection is an input; it has no variables",
                            span,
                        )
                        .with_label("use `pre` for the input's value")),
                    };
                }
                "post" => return Ok(Expr::Ref(Ref::Post(neuron_member(rule.post, member, "post")?))),
                _ => {}
            }
        }
        let Some(sym) = self.symbols.get(name) else {
            return Err(self.unknown(first, scope));
        };
        match sym.kind {
            SymKind::Population if matches!(scope, Scope::Energy) => {
                let Some(Some(n)) = self
                    .pop_neuron
                    .get(sym.index)
                    .map(|n| n.and_then(|i| self.neurons[i].as_ref()))
                else {
                    return Err(poisoned(span));
                };
                Ok(Expr::Ref(Ref::PopVar(sym.index, neuron_member(n, member, name)?)))
            }
            SymKind::Dataset if matches!(scope, Scope::Energy | Scope::Input) => {
                let fields = &self.dataset_fields[sym.index];
                match fields.iter().position(|f| *f == member.node) {
                    Some(i) => Ok(Expr::Ref(Ref::DataField(sym.index, i))),
                    None => Err(diag::unknown_member(
                        "field",
                        &member.node,
                        &format!("dataset `{name}`"),
                        member.span,
                        fields.iter().map(String::as_str),
                    )),
                }
            }
            _ => Err(self.misplaced(first, sym.kind, sym.span, scope)),
        }
    }

    fn single_name(&self, id: &Ident, scope: &Scope) -> Result<Expr, Diagnostic> {
        let name = id.node.as_str();
        match scope {
            Scope::Function(params) => {
                if let Some(i) = params.iter().position(|p| p == name) {
                    return Ok(Expr::Ref(Ref::Arg(i)));
                }
            }
            Scope::Neuron(n) => {
                if let Some(v) = n.var(name) {
                    return Ok(Expr::Ref(Ref::Own(v)));
                }
                if name == "input" {
                    return Ok(Expr::Ref(Ref::SynapticInput));
                }
            }
            Scope::Rule(_) => match name {
                "W" => return Ok(Expr::Ref(Ref::Weight)),
                "pre" => return Ok(Expr::Ref(Ref::Pre(None))),
                _ => {}
            },
            Scope::Input => {
                if name == "t" {
                    return Ok(Expr::Ref(Ref::Time));
                }
            }
            Scope::Energy => {}
        }
        match name {
            "pi" => return Ok(Expr::Num(std::f64::consts::PI)),
            "dt" => return Ok(Expr::Ref(Ref::Dt)),
            _ => {}
        }
        match self.symbols.get(name) {
            Some(s) if s.kind == SymKind::Const => Ok(Expr::Ref(Ref::Const(s.index))),
            Some(s) if s.kind == SymKind::Input && matches!(scope, Scope::Energy) => Ok(Expr::Ref(Ref::Input(s.index))),
            Some(s) => Err(self.misplaced(id, s.kind, s.span, scope)),
            None => Err(self.unknown(id, scope)),
        }
    }

    fn unknown(&self, id: &Ident, scope: &Scope) -> Diagnostic {
        let mut names: Vec<&str> = self.symbols.names_of(SymKind::Const).collect();
        match scope {
            Scope::Function(p) => names.extend(p.iter().map(String::as_str)),
            Scope::Neuron(n) => {
                names.extend(n.names());
                names.push("input");
            }
            Scope::Rule(_) => names.extend(["pre", "post", "W"]),
            Scope::Energy => {
                names.extend(self.symbols.names_of(SymKind::Population));
                names.extend(self.symbols.names_of(SymKind::Input));
            }
            Scope::Input => names.push("t"),
        }
        diag::unknown_name("name", &id.node, id.span, names)
    }

    fn misplaced(&self, id: &Ident, kind: SymKind, def: Span, scope: &Scope) -> Diagnostic {
        if let Scope::Rule(r) = scope
            && matches!(
                kind,
                SymKind::Population | SymKind::Input | SymKind::Dataset | SymKind::Projection
            )
        {
            return Diagnostic::error(
                "E0412",
                format!(
                    "plasticity rule of `{}` reads `{}`, which is not local to the projection",
                    r.projection, id.node
                ),
                id.span,
            )
            .with_label("not visible to these synapses")
            .with_secondary(def, "defined here")
            .with_note("a rule may only read `pre`, `post`, the weight `W`, constants and built-ins")
            .with_help("route the signal through a projection into a compartment of the postsynaptic neuron");
        }
        let place = match scope {
            Scope::Function(_) => "in a function body",
            Scope::Neuron(_) => "inside a neuron type",
            Scope::Input => "in an input source",
            Scope::Energy => "in the energy",
            Scope::Rule(_) => "in a plasticity rule",
        };
        Diagnostic::error(
            "E0419",
            format!("{} `{}` cannot be used {place}", kind.article(), id.node),
            id.span,
        )
        .with_label(format!("{} here", kind.name()))
        .with_secondary(def, "defined here")
    }
}

/// A diagnostic for an expression that refers to something that already failed to check; it is
/// never shown because the earlier error is.
fn poisoned(span: Span) -> Diagnostic {
    Diagnostic::error("E0000", "refers to a declaration with errors", span)
}

/// The time constant of a first-order filter (`lowpass`, a projection's `synapse`): a constant
/// expression, 0 (no filter) or at least `dt` (when `dt` is known).
pub fn filter_time_constant(tau: &ast::Expr, consts: &dyn eval::NameLookup) -> Result<f64, Diagnostic> {
    let v = eval::eval_num(tau, consts)?;
    if v < 0.0 {
        return Err(Diagnostic::error(
            "E0502",
            format!("a filter time constant must be 0 (no filter) or positive, but it is {v}"),
            tau.span,
        )
        .with_label("filter time constant"));
    }
    let dt = consts.lookup("dt", tau.span).ok().flatten();
    if let Some(dt) = dt.filter(|&dt| v > 0.0 && v < dt) {
        return Err(Diagnostic::error(
            "E0503",
            format!("time constant {v} is smaller than the time step dt = {dt}"),
            tau.span,
        )
        .with_label("filter time constant")
        .with_note("explicit Euler needs every τ ≥ dt (τ = dt is allowed; 0 turns the filter off)"));
    }
    Ok(v)
}

/// Whether a diagnostic only repeats an earlier error.
pub fn is_poisoned(d: &Diagnostic) -> bool {
    d.code == "E0000"
}

/// A time constant may depend only on numbers, constants and parameters.
fn check_time_constant(tau: &Expr, span: Span) -> Result<(), Diagnostic> {
    let mut bad = None;
    visit(tau, &mut |e| {
        if let Expr::Ref(r) = e {
            match r {
                Ref::Own(NeuronVar::Param(_)) | Ref::Const(_) | Ref::Dt => {}
                Ref::Own(NeuronVar::State(_)) => bad = Some("a state variable"),
                Ref::Own(NeuronVar::Def(_)) => bad = Some("a derived quantity"),
                Ref::Own(NeuronVar::Compartment(_)) => bad = Some("a compartment potential"),
                Ref::SynapticInput => bad = Some("the synaptic input"),
                _ => bad = Some("a time-varying quantity"),
            }
        }
    });
    match bad {
        Some(what) => Err(
            Diagnostic::error("E0403", format!("a time constant cannot depend on {what}"), span)
                .with_label("time constant here")
                .with_note("time constants may use numbers, constants and the neuron's parameters"),
        ),
        None => Ok(()),
    }
}

/// Calls `f` on `e` and every sub-expression.
pub fn visit(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Neg(a) => visit(a, f),
        Expr::Binary(_, a, b) | Expr::D(a, b) | Expr::I(a, b) => {
            visit(a, f);
            visit(b, f);
        }
        Expr::Call(_, args) | Expr::List(args) => args.iter().for_each(|a| visit(a, f)),
        Expr::Num(_) | Expr::Str(_) | Expr::Ref(_) => {}
    }
}

/// Matches call arguments to parameter names: positional first, then by name.
pub fn bind<'e>(func: &Ident, args: &'e [Arg], params: &[&str]) -> Result<Vec<&'e ast::Expr>, Diagnostic> {
    let mut slots: Vec<Option<&ast::Expr>> = vec![None; params.len()];
    let mut positional = 0;
    for a in args {
        match &a.name {
            None => {
                if positional >= params.len() {
                    return Err(diag::wrong_arity(func, args.len(), params.len()));
                }
                slots[positional] = Some(&a.value);
                positional += 1;
            }
            Some(n) => {
                let Some(i) = params.iter().position(|p| *p == n.node) else {
                    let d = Diagnostic::error(
                        "E0212",
                        format!("`{}` has no parameter named `{}`", func.node, n.node),
                        n.span,
                    )
                    .with_label("unknown argument name")
                    .with_note(format!("parameters: {}", params.join(", ")));
                    return Err(match crate::suggest::closest(&n.node, params.iter().copied()) {
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => d,
                    });
                };
                if slots[i].is_some() {
                    return Err(
                        Diagnostic::error("E0212", format!("argument `{}` given twice", n.node), n.span)
                            .with_label("given again here"),
                    );
                }
                slots[i] = Some(&a.value);
            }
        }
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.ok_or_else(|| {
                Diagnostic::error(
                    "E0211",
                    format!("`{}` is missing argument `{}`", func.node, params[i]),
                    func.span,
                )
                .with_label(format!("needs `{}`", params[i]))
            })
        })
        .collect()
}

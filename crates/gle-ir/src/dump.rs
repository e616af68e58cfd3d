//! The stable, readable text dump of a [`Model`] (`glec emit ir`, snapshot tests).

use crate::ir::*;
use std::fmt::Write;

/// Formats a number compactly and round-trippably: plain decimals in `[1e-4, 1e15)`, scientific
/// notation outside.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-4..1e15).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Renders expressions with names, relative to a model and (optionally) a neuron type.
pub struct Printer<'m> {
    model: &'m Model,
    neuron: Option<&'m NeuronType>,
    function: Option<&'m Function>,
    rule: Option<&'m PlasticityRule>,
}

impl<'m> Printer<'m> {
    /// A printer for global expressions of `model`.
    pub fn new(model: &'m Model) -> Self {
        Printer {
            model,
            neuron: None,
            function: None,
            rule: None,
        }
    }

    /// A printer for definitions inside `neuron`.
    pub fn in_neuron(model: &'m Model, neuron: &'m NeuronType) -> Self {
        Printer {
            neuron: Some(neuron),
            ..Printer::new(model)
        }
    }

    /// A printer for the expressions of a plasticity rule (`pre`, `post.var`, `W`).
    pub fn in_rule(model: &'m Model, rule: &'m PlasticityRule) -> Self {
        Printer {
            rule: Some(rule),
            ..Printer::new(model)
        }
    }

    /// The name of a variable of neuron type `n`.
    pub fn var_name(n: &NeuronType, v: NeuronVar) -> &str {
        match v {
            NeuronVar::Param(i) => &n.params[i].name,
            NeuronVar::State(i) => &n.states[i].name,
            NeuronVar::Def(i) => &n.defs[i].name,
            NeuronVar::Compartment(i) => &n.compartments[i].name,
        }
    }

    fn pop_var(&self, p: usize, v: NeuronVar) -> String {
        let pop = &self.model.populations[p];
        format!("{}.{}", pop.name, Self::var_name(&self.model.neurons[pop.neuron], v))
    }

    fn rule_side(&self, post: bool) -> Option<&'m NeuronType> {
        let proj = &self.model.projections[self.rule?.projection];
        let pop = if post {
            proj.post
        } else {
            match proj.pre {
                Source::Population(p, _) => p,
                Source::Input(_) => return None,
            }
        };
        Some(&self.model.neurons[self.model.populations[pop].neuron])
    }

    fn reference(&self, r: Ref) -> String {
        let m = self.model;
        match r {
            Ref::Const(i) => m.consts[i].name.clone(),
            Ref::Arg(i) => self.function.map_or_else(|| format!("arg{i}"), |f| f.params[i].clone()),
            Ref::Time => "t".into(),
            Ref::Dt => "dt".into(),
            Ref::Own(v) => self
                .neuron
                .map_or_else(|| format!("{v:?}"), |n| Self::var_name(n, v).to_string()),
            Ref::SynapticInput => "input".into(),
            Ref::Input(i) => m.inputs[i].name.clone(),
            Ref::Population(p) => m.populations[p].name.clone(),
            Ref::PopVar(p, v) => self.pop_var(p, v),
            Ref::DataField(d, f) => format!("{}.{}", m.datasets[d].name, m.datasets[d].fields[f].name),
            Ref::Pre(None) => "pre".into(),
            Ref::Pre(Some(v)) => self
                .rule_side(false)
                .map_or_else(|| format!("pre.{v:?}"), |n| format!("pre.{}", Self::var_name(n, v))),
            Ref::Post(v) => self
                .rule_side(true)
                .map_or_else(|| format!("post.{v:?}"), |n| format!("post.{}", Self::var_name(n, v))),
            Ref::Weight => "W".into(),
        }
    }

    /// Renders `e` with the fewest parentheses its precedence needs.
    pub fn expr(&self, e: &Expr) -> String {
        self.prec(e, 0)
    }

    fn prec(&self, e: &Expr, ctx: u8) -> String {
        let (p, s) = match e {
            Expr::Num(v) if *v < 0.0 => (3, num(*v)),
            Expr::Num(v) => (9, num(*v)),
            Expr::Str(s) => (9, format!("{s:?}")),
            Expr::Ref(r) => (9, self.reference(*r)),
            Expr::List(items) => (
                9,
                format!(
                    "[{}]",
                    items.iter().map(|i| self.prec(i, 0)).collect::<Vec<_>>().join(", ")
                ),
            ),
            Expr::Neg(a) => (3, format!("-{}", self.prec(a, 3))),
            Expr::Binary(op, a, b) => {
                let (p, l, r) = match op {
                    BinOp::Add | BinOp::Sub => (1, 1, 2),
                    BinOp::Mul | BinOp::Div => (2, 2, 3),
                    BinOp::Pow => (4, 5, 4),
                };
                (p, format!("{} {} {}", self.prec(a, l), op.symbol(), self.prec(b, r)))
            }
            Expr::Call(c, args) => {
                let name = match c {
                    Callee::Builtin(b) => b.name().to_string(),
                    Callee::User(i) => self.model.functions[*i].name.clone(),
                };
                (
                    9,
                    format!(
                        "{name}({})",
                        args.iter().map(|a| self.prec(a, 0)).collect::<Vec<_>>().join(", ")
                    ),
                )
            }
            Expr::D(t, a) => (5, format!("D[{}] {}", self.prec(t, 0), self.prec(a, 5))),
            Expr::I(t, a) => (5, format!("I[{}] {}", self.prec(t, 0), self.prec(a, 5))),
        };
        if p < ctx { format!("({s})") } else { s }
    }
}

fn init(i: &Init) -> String {
    match i {
        Init::Const(v) => num(*v),
        Init::Values(vs) => {
            let shown: Vec<String> = vs.iter().take(8).map(|v| num(*v)).collect();
            if vs.len() > 8 {
                format!("[{}, … ({} values)]", shown.join(", "), vs.len())
            } else {
                format!("[{}]", shown.join(", "))
            }
        }
        Init::Random(d) => dist(d),
        Init::File(f) => format!("file({f:?})"),
    }
}

fn dist(d: &Distribution) -> String {
    match d {
        Distribution::Uniform { lo, hi } => format!("uniform({}, {})", num(*lo), num(*hi)),
        Distribution::Normal { mean, std } => format!("normal({}, {})", num(*mean), num(*std)),
        Distribution::FanInUniform => "fan_in_uniform".into(),
    }
}

fn segments(pv: &ParamValue) -> String {
    let s = if pv.segments.len() == 1 {
        init(&pv.segments[0].1)
    } else {
        pv.segments
            .iter()
            .map(|(n, i)| format!("{n}×{}", init(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !pv.learn {
        s
    } else if pv.lr_factor == 1.0 {
        format!("{s} learn")
    } else {
        format!("{s} learn(lr: {})", pv.lr_factor)
    }
}

fn duration(m: &Model, d: &Duration) -> String {
    match d {
        Duration::Steps(n) => format!("{n} steps"),
        Duration::Data { dataset, test } => format!(
            "one pass over {}.{}",
            m.datasets[*dataset].name,
            if *test { "test" } else { "train" }
        ),
    }
}

fn protocol_items(m: &Model, items: &[ProtocolItem], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            ProtocolItem::Phase(p) => {
                let mut line = format!("{pad}phase {}: {}", p.name, duration(m, &p.duration));
                if !p.learn {
                    line.push_str(", learn off");
                }
                for (c, v) in &p.overrides {
                    let _ = write!(line, ", {} = {}", m.consts[*c].name, num(*v));
                }
                for (pop, param, v) in &p.param_overrides {
                    let pop = &m.populations[*pop];
                    let name = &m.neurons[pop.neuron].params[*param].name;
                    let _ = write!(line, ", override {}.{name} = {}", pop.name, num(*v));
                }
                let _ = writeln!(out, "{line}");
            }
            ProtocolItem::Repeat { count, items } => {
                let _ = writeln!(out, "{pad}repeat {count}:");
                protocol_items(m, items, indent + 2, out);
            }
        }
    }
}

impl Model {
    /// The name of a called function.
    pub fn callee_name(&self, c: Callee) -> &str {
        match c {
            Callee::Builtin(b) => b.name(),
            Callee::User(i) => &self.functions[i].name,
        }
    }

    /// The stable text dump of the model: every declaration, resolved and evaluated.
    pub fn dump(&self) -> String {
        let mut o = String::new();
        let p = Printer::new(self);
        let _ = writeln!(o, "model {}", self.name);
        for c in &self.consts {
            let _ = writeln!(o, "const {} = {}", c.name, num(c.value));
        }
        for f in &self.functions {
            let fp = Printer {
                function: Some(f),
                ..Printer::new(self)
            };
            let _ = writeln!(o, "fn {}({}) = {}", f.name, f.params.join(", "), fp.expr(&f.body));
        }
        for n in &self.neurons {
            let np = Printer::in_neuron(self, n);
            let _ = writeln!(o, "neuron {}", n.name);
            for q in &n.params {
                let def = q
                    .default
                    .map_or_else(|| "(no default)".to_string(), |v| format!("= {}", num(v)));
                let tc = if q.time_constant { "  [time constant]" } else { "" };
                let _ = writeln!(o, "  param {} {def}{tc}", q.name);
            }
            for s in &n.states {
                let _ = writeln!(o, "  state {}", s.name);
            }
            for c in &n.compartments {
                let g = c.conductance.as_ref().map_or_else(
                    || "no conductance".to_string(),
                    |g| format!("conductance {}", np.expr(g)),
                );
                let _ = writeln!(o, "  compartment {} ({g})", c.name);
            }
            if let Some(l) = &n.leak {
                let _ = writeln!(o, "  leak {}", np.expr(l));
            }
            for d in &n.defs {
                let kind = match d.kind {
                    DefKind::Let => "let",
                    DefKind::Rate => "rate",
                    DefKind::Mismatch => "mismatch",
                };
                let _ = writeln!(o, "  {kind} {} = {}", d.name, np.expr(&d.value));
            }
        }
        for i in &self.inputs {
            let _ = writeln!(o, "input {}[{}] = {}", i.name, i.size, p.expr(&i.source));
        }
        for d in &self.datasets {
            let present = match d.present {
                Presentation::Stream => "stream",
                Presentation::Hold => "hold",
            };
            let mut line = format!("dataset {} file {:?} present {present}", d.name, d.file);
            if let Some(s) = d.steps_per_sample {
                let _ = write!(line, " steps_per_sample {s}");
            }
            if let Some(s) = d.shuffle_seed {
                let _ = write!(line, " shuffle {s}");
            }
            let _ = writeln!(o, "{line}");
            for f in &d.fields {
                let src = match &f.source {
                    DataSource::Array { train, test: Some(t) } => format!("array({train:?}, test: {t:?})"),
                    DataSource::Array { train, test: None } => format!("array({train:?})"),
                    DataSource::Columns { start, end } => format!("columns({start}, {end})"),
                };
                let _ = writeln!(o, "  field {} = {src}", f.name);
            }
        }
        for pop in &self.populations {
            let n = &self.neurons[pop.neuron];
            let role = match pop.role {
                Role::Learner => "learner",
                Role::Fixed => "fixed (no error)",
            };
            let _ = writeln!(o, "population {}[{}] : {}  {role}", pop.name, pop.size, n.name);
            for (q, pv) in n.params.iter().zip(&pop.params) {
                let _ = writeln!(o, "  {} = {}", q.name, segments(pv));
            }
        }
        for pr in &self.projections {
            let pre = match pr.pre {
                Source::Input(i) => self.inputs[i].name.clone(),
                Source::Population(q, v) => p.pop_var(q, v),
            };
            let post = &self.populations[pr.post];
            let target = match pr.compartment {
                Some(c) => format!("{}.{}", post.name, self.neurons[post.neuron].compartments[c].name),
                None => post.name.clone(),
            };
            let conn = match &pr.connectivity {
                Connectivity::Dense {
                    init: w,
                    bias,
                    map,
                    synapse,
                } => {
                    let b = bias
                        .as_ref()
                        .map_or_else(String::new, |b| format!(", bias {}", init(b)));
                    let m = map.map_or_else(String::new, |m| format!(", map {}", self.callee_name(m)));
                    let s = synapse.map_or_else(String::new, |tau| format!(", synapse τ {}", num(tau)));
                    format!("dense {}×{} init {}{b}{m}{s}", pr.shape.0, pr.shape.1, init(w))
                }
                Connectivity::Diagonal { init: w } => format!("diagonal {} init {}", pr.shape.0, init(w)),
                Connectivity::Identity => format!("identity {}", pr.shape.0),
            };
            let plast = match pr.plasticity {
                Plasticity::Fixed => "fixed".to_string(),
                Plasticity::Learn { lr_factor: 1.0 } => "learn".to_string(),
                Plasticity::Learn { lr_factor } => format!("learn(lr × {})", num(lr_factor)),
            };
            let fb = match pr.feedback {
                Feedback::Transpose => "transpose".to_string(),
                Feedback::Random(d) => format!("random({})", dist(&d)),
            };
            let _ = writeln!(
                o,
                "projection {} : {pre} -> {target}  {conn}  {plast}  feedback {fb}",
                pr.name
            );
        }
        if let Some(e) = &self.energy {
            let _ = writeln!(o, "energy {} = {}", e.name, p.expr(&e.value));
        }
        for r in &self.rules {
            let rp = Printer {
                rule: Some(r),
                ..Printer::new(self)
            };
            let _ = writeln!(o, "rule {} lr {}", self.projections[r.projection].name, num(r.lr));
            if let Some(w) = &r.weight {
                let _ = writeln!(o, "  dW = {}", rp.expr(w));
            }
            if let Some(b) = &r.bias {
                let _ = writeln!(o, "  db = {}", rp.expr(b));
            }
            if let Some((lo, hi)) = r.clip {
                let _ = writeln!(o, "  clip {}, {}", num(lo), num(hi));
            }
        }
        let l = &self.learning;
        let errors = match l.errors {
            ErrorMode::Prospective => "prospective".to_string(),
            ErrorMode::Instantaneous => "instantaneous".to_string(),
            ErrorMode::Adjoint { window } => format!("adjoint(window: {window})"),
        };
        let opt = match l.optimizer {
            Optimizer::Sgd { lr } => format!("sgd(lr: {})", num(lr)),
            Optimizer::Momentum { lr, mu } => format!("momentum(lr: {}, mu: {})", num(lr), num(mu)),
            Optimizer::Adam { lr, beta1, beta2, eps } => {
                format!(
                    "adam(lr: {}, beta1: {}, beta2: {}, eps: {})",
                    num(lr),
                    num(beta1),
                    num(beta2),
                    num(eps)
                )
            }
        };
        let _ = writeln!(o, "learn errors {errors} optimizer {opt}");
        if let Some((patience, factor)) = l.plateau {
            let _ = writeln!(o, "  plateau patience {patience} factor {}", num(factor));
        }
        for (name, min) in &l.clamps {
            let _ = writeln!(o, "  clamp_min {name} {}", num(*min));
        }
        let r = &self.protocol;
        let schedule = match r.schedule {
            Schedule::Parallel => "parallel",
            Schedule::Sequential => "sequential",
        };
        let integrator = match r.integrator {
            Integrator::Euler => "euler",
            Integrator::Exponential => "exponential",
        };
        let _ = writeln!(
            o,
            "run dt {} batch {} seed {} schedule {schedule} integrator {integrator}",
            num(r.dt),
            r.batch,
            r.seed
        );
        protocol_items(self, &r.items, 2, &mut o);
        for rec in &r.records {
            let names: Vec<String> = rec
                .targets
                .iter()
                .map(|t| match t {
                    Recorded::PopVar(q, v) => p.pop_var(*q, *v),
                    Recorded::Input(i) => self.inputs[*i].name.clone(),
                    Recorded::Weights(k) => format!("{}.W", self.projections[*k].name),
                    Recorded::AllWeights => "weights".into(),
                })
                .collect();
            let _ = writeln!(o, "  record {} every {}", names.join(", "), rec.every);
        }
        if let Some(c) = r.checkpoint_every {
            let _ = writeln!(o, "  checkpoint every {c}");
        }
        if let Some(ro) = r.readout {
            let s = match ro {
                Readout::ArgmaxOfSum(q, v) => format!("argmax(sample_sum({}))", p.pop_var(q, v)),
                Readout::ArgmaxOfLast(q, v) => format!("argmax(last({}))", p.pop_var(q, v)),
            };
            let _ = writeln!(o, "  readout {s}");
        }
        if !r.metrics.is_empty() {
            let _ = writeln!(o, "  metrics {}", r.metrics.join(", "));
        }
        o
    }
}

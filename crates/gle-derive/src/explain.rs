//! The derived equations of a model as text (`glec explain`).

use crate::program::Program;
use crate::sym::Leaf;
use gle_ir::{Connectivity, ErrorMode, Model, Plasticity, Role, Source};
use std::fmt::Write;

/// Output format of [`explain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain text.
    Text,
    /// Markdown: one section per population, equations in code blocks.
    Markdown,
    /// LaTeX: one `align*` environment per population.
    Latex,
}

/// A LaTeX name for a `.gle` identifier: `tau_m` → `\tau^{m}`, `gamma` → `\gamma`, other
/// subscripts kept (`g_l` → `g_{l}`).
fn latex_name(name: &str) -> String {
    let greek = [
        "alpha", "beta", "gamma", "delta", "eta", "lambda", "mu", "sigma", "tau", "theta", "phi",
    ];
    let (head, tail) = name.split_once('_').map_or((name, None), |(h, t)| (h, Some(t)));
    let head = if greek.contains(&head) {
        format!("\\{head}")
    } else if head.chars().count() == 1 {
        head.to_string()
    } else {
        format!("\\mathrm{{{head}}}")
    };
    match tail {
        Some(t) if head.starts_with("\\tau") && (t == "m" || t == "r") => format!("{head}^{{{t}}}"),
        Some(t) => format!("{head}_{{\\mathrm{{{}}}}}", t.replace('_', "\\_")),
        None => head,
    }
}

/// The derived equations as LaTeX.
fn explain_latex(model: &Model, program: &Program) -> String {
    let g = &program.graph;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "% glec explain --format latex: equations derived for model {}",
        model.name
    );
    for (p, pop) in model.populations.iter().enumerate() {
        let nt = &model.neurons[pop.neuron];
        let nd = &program.neurons[pop.neuron];
        let name = |l: Leaf| -> String {
            match l {
                Leaf::Param(i) => latex_name(&nt.params[i].name),
                Leaf::State(i) => latex_name(&nt.states[i].name),
                Leaf::StateDot(i) => format!("\\dot{{{}}}", latex_name(&nt.states[i].name)),
                Leaf::Aux(k) => format!("y_{{{k}}}"),
                Leaf::AuxDot(k) => format!("\\dot{{y}}_{{{k}}}"),
                Leaf::Input => "I".into(),
                Leaf::Compartment(i) => format!("v_{{\\mathrm{{{}}}}}", nt.compartments[i].name),
                Leaf::Error => "e".into(),
                Leaf::Uhat => "\\breve{u}".into(),
                Leaf::Const(i) => latex_name(&model.consts[i].name),
                Leaf::Dt => "\\Delta t".into(),
                Leaf::Time => "t".into(),
                Leaf::Noise => "\\xi".into(),
                Leaf::Buf(b) => format!("\\mathrm{{{}}}", program.buffers[b].name.replace('_', "\\_")),
            }
        };
        let _ = writeln!(o, "% population {} [{}] : {}", pop.name, pop.size, nt.name);
        let _ = writeln!(o, "\\begin{{align*}}");
        let _ = writeln!(o, "  \\dot{{u}} &= {} \\\\", g.show_latex(nd.udot, &name));
        if let Some(tau_r) = nd.tau_r {
            let _ = writeln!(
                o,
                "  \\breve{{u}} &= u + {} \\cdot \\dot{{u}} \\\\",
                g.show_latex(tau_r, &name)
            );
        }
        let _ = writeln!(o, "  r &= {} \\\\", g.show_latex(nd.rate, &name));
        let _ = writeln!(o, "  \\varphi'(\\breve{{u}}) &= {}", g.show_latex(nd.slope, &name));
        if let Some((_, _, gi)) = program.errors.iter().find(|(q, _, _)| *q == p) {
            let _ = writeln!(o, "  \\\\ g &= {}", g.show_latex(*gi, &name));
            if let ErrorMode::Adjoint { window } = model.learning.errors {
                let _ = writeln!(
                    o,
                    "  \\\\ \\lambda_n &= e^{{-\\Delta t/\\tau^{{m}}}} \\lambda_{{n+1}} + \\tfrac{{\\Delta t}}{{\\tau^{{m}}}}\\left(\\alpha_{{n+1}} - \\tfrac{{\\tau^{{r}}}}{{\\Delta t}}(\\alpha_{{n+1}} - \\alpha_n)\\right), \\quad \\alpha = g + \\varphi' \\odot W^\\top \\lambda_{{\\mathrm{{above}}}} \\quad \\text{{(offline, every {window} steps)}}"
                );
            }
            if let (ErrorMode::Prospective, Some(tau_r)) = (model.learning.errors, nd.tau_r) {
                let _ = writeln!(
                    o,
                    "  \\\\ {} \\dot{{v}} &= g - v, \\quad e = v + {} \\cdot \\dot{{v}}",
                    g.show_latex(tau_r, &name),
                    g.show_latex(nd.tau_m, &name)
                );
            }
        }
        let _ = writeln!(o, "\\end{{align*}}");
    }
    o
}

/// The continuous-time equations glec derived for `model`, per population, then plasticity.
pub fn explain(model: &Model, program: &Program, format: Format) -> String {
    if format == Format::Latex {
        return explain_latex(model, program);
    }
    let g = &program.graph;
    let mut o = String::new();
    let md = format == Format::Markdown;
    let _ = writeln!(
        o,
        "{}model {}{}",
        if md { "# " } else { "" },
        model.name,
        if md { "\n" } else { "" }
    );
    for (p, pop) in model.populations.iter().enumerate() {
        let nt = &model.neurons[pop.neuron];
        let nd = &program.neurons[pop.neuron];
        let role = match pop.role {
            Role::Learner => "learner: receives errors",
            Role::Fixed => "fixed: in no energy term, no error",
        };
        let title = format!("population {} [{}] : {} ({role})", pop.name, pop.size, nt.name);
        if md {
            let _ = writeln!(o, "## {title}\n\n```");
        } else {
            let _ = writeln!(o, "{title}");
        }
        let name = |l: Leaf| -> String {
            match l {
                Leaf::Param(i) => nt.params[i].name.clone(),
                Leaf::State(i) => nt.states[i].name.clone(),
                Leaf::StateDot(i) => format!("{}'", nt.states[i].name),
                Leaf::Aux(k) => format!("y{k}"),
                Leaf::AuxDot(k) => format!("y{k}'"),
                Leaf::Input => "input".into(),
                Leaf::Compartment(i) => nt.compartments[i].name.clone(),
                Leaf::Error => "e".into(),
                Leaf::Uhat => "uhat".into(),
                Leaf::Const(i) => model.consts[i].name.clone(),
                Leaf::Dt => "dt".into(),
                Leaf::Time => "t".into(),
                Leaf::Noise => "noise".into(),
                Leaf::Buf(b) => program.buffers[b].name.clone(),
            }
        };
        let u = &nt.states[0].name;
        // The summed input of the soma and of every compartment.
        let targets: Vec<(Option<usize>, String)> = std::iter::once((None, "input".to_string()))
            .chain(
                nt.compartments
                    .iter()
                    .enumerate()
                    .map(|(c, comp)| (Some(c), comp.name.clone())),
            )
            .collect();
        for (target, target_name) in targets {
            let mut filters = Vec::new();
            let terms: Vec<String> = model
                .projections
                .iter()
                .filter(|pr| pr.post == p && pr.compartment == target)
                .map(|pr| {
                    let mut pre = match pr.pre {
                        Source::Input(i) => model.inputs[i].name.clone(),
                        Source::Population(q, var) => {
                            let qn = &model.neurons[model.populations[q].neuron];
                            format!("{}.{}", model.populations[q].name, gle_ir::Printer::var_name(qn, var))
                        }
                    };
                    if let Connectivity::Dense { synapse: Some(tau), .. } = pr.connectivity {
                        let syn = format!("{}.rsyn", pr.name);
                        filters.push(format!(
                            "      where {} * {syn}' = {pre} - {syn}  (synaptic filter)",
                            gle_ir::dump::num(tau)
                        ));
                        pre = syn;
                    }
                    match &pr.connectivity {
                        Connectivity::Dense { bias, map: Some(f), .. } => {
                            let bias = if bias.is_some() {
                                format!(" + {}.b", pr.name)
                            } else {
                                String::new()
                            };
                            format!("{}({}.W · {pre}{bias})", model.callee_name(*f), pr.name)
                        }
                        Connectivity::Dense { bias: Some(_), .. } => format!("{0}.W · {pre} + {0}.b", pr.name),
                        Connectivity::Dense { .. } => format!("{}.W · {pre}", pr.name),
                        Connectivity::Diagonal { .. } => format!("{}.w ⊙ {pre}", pr.name),
                        Connectivity::Identity => pre,
                    }
                })
                .collect();
            if target.is_none() && nt.mismatch.is_none() {
                continue;
            }
            let sum = if terms.is_empty() {
                "0".to_string()
            } else {
                terms.join(" + ")
            };
            let _ = writeln!(o, "  {target_name} = {sum}");
            for line in filters {
                let _ = writeln!(o, "{line}");
            }
        }
        let _ = writeln!(o, "  {u}' = {}", g.show(nd.udot, &name));
        if let Some(i) = nt.mismatch {
            let written = gle_ir::Printer::in_neuron(model, nt).expr(&nt.defs[i].value);
            let _ = writeln!(
                o,
                "      solved from the mismatch {} = {written} = {} (= gamma * e)",
                nt.defs[i].name,
                g.show(nd.mismatch, &name)
            );
            if pop.role == Role::Fixed {
                let _ = writeln!(o, "      with e = 0: the population is in no energy term");
            }
        }
        match nd.tau_r {
            Some(tau_r) => {
                let _ = writeln!(o, "  uhat = {u} + {} * {u}'", g.show(tau_r, &name));
            }
            None => {
                let _ = writeln!(o, "  uhat = {u}");
            }
        }
        let _ = writeln!(o, "  r = {}", g.show(nd.rate, &name));
        let _ = writeln!(o, "  phi'(uhat) = {}", g.show(nd.slope, &name));
        for (k, (tau, x)) in nd.filters.iter().enumerate() {
            let _ = writeln!(o, "  y{k}' = ({} - y{k}) / {}", g.show(*x, &name), g.show(*tau, &name));
        }
        if let Some((_, c, gi)) = program.errors.iter().find(|(q, _, _)| *q == p) {
            let bname = |l: Leaf| -> String {
                match l {
                    Leaf::Buf(b) => program.buffers[b].name.clone(),
                    other => name(other),
                }
            };
            if let ErrorMode::Adjoint { window } = model.learning.errors {
                let _ = writeln!(o, "  e = {}  (local error: the output cost only)", g.show(*gi, &bname));
                let _ = writeln!(
                    o,
                    "  adjoint (offline, every {window} steps, backwards from lambda = 0): alpha = e + phi'(uhat) * W^T lambda_above,"
                );
                let _ = writeln!(
                    o,
                    "      lambda(n) = exp(-dt / tau_m) * lambda(n+1) + dt / tau_m * (alpha(n+1) - tau_r / dt * (alpha(n+1) - alpha(n)))"
                );
                if md {
                    let _ = writeln!(o, "```\n");
                }
                continue;
            }
            let _ = writeln!(o, "  g = {}", g.show(*gi, &bname));
            let _ = writeln!(o, "      where the error arriving from above is {}", g.show(*c, &bname));
            let tau_m = g.show(nd.tau_m, &name);
            match (model.learning.errors, nd.tau_r) {
                (ErrorMode::Prospective, Some(tau_r)) => {
                    let tau_r = g.show(tau_r, &name);
                    let _ = writeln!(
                        o,
                        "  error neuron (GLE, time constants swapped): {tau_r} * v' = g - v,  e = v + {tau_m} * v'"
                    );
                }
                _ => {
                    let _ = writeln!(o, "  e = g  (instantaneous errors)");
                }
            }
        }
        if md {
            let _ = writeln!(o, "```\n");
        }
    }
    let mut plastic = Vec::new();
    for (k, pr) in model.projections.iter().enumerate() {
        if let Some(rule) = model.rules.iter().find(|r| r.projection == k) {
            let printer = gle_ir::Printer::in_rule(model, rule);
            if let Some(w) = &rule.weight {
                plastic.push(format!(
                    "d{}.W/dt = {} * ({})   (explicit rule)",
                    pr.name,
                    gle_ir::dump::num(rule.lr),
                    printer.expr(w)
                ));
            }
            if let Some((lo, hi)) = rule.clip {
                plastic.push(format!(
                    "  {}.W clipped to [{}, {}]",
                    pr.name,
                    gle_ir::dump::num(lo),
                    gle_ir::dump::num(hi)
                ));
            }
            continue;
        }
        if let Plasticity::Learn { lr_factor } = pr.plasticity {
            let pre = match (pr.pre, &pr.connectivity) {
                (_, Connectivity::Dense { synapse: Some(_), .. }) => format!("{}.rsyn", pr.name),
                (Source::Input(i), _) => model.inputs[i].name.clone(),
                (Source::Population(q, _), _) => format!("{}.r", model.populations[q].name),
            };
            let post = &model.populations[pr.post].name;
            let eta = if lr_factor == 1.0 {
                "eta".to_string()
            } else {
                format!("{} * eta", gle_ir::dump::num(lr_factor))
            };
            if let ErrorMode::Adjoint { window } = model.learning.errors {
                plastic.push(format!(
                    "{}.W: once every {window} steps, grad = -integral of {post}.lambda {pre}^T dt over the window",
                    pr.name
                ));
                if let Connectivity::Dense { bias: Some(_), .. } = pr.connectivity {
                    plastic.push(format!(
                        "{}.b: once every {window} steps, grad = -integral of {post}.lambda dt",
                        pr.name
                    ));
                }
                continue;
            }
            plastic.push(format!("d{}.W/dt = -{eta} * dE/dW = {eta} * {post}.e {pre}^T", pr.name));
            if let Connectivity::Dense { bias: Some(_), .. } = pr.connectivity {
                plastic.push(format!("d{}.b/dt = {eta} * {post}.e", pr.name));
            }
        }
    }
    for (p, pop) in model.populations.iter().enumerate() {
        let nt = &model.neurons[pop.neuron];
        let nd = &program.neurons[pop.neuron];
        for (i, pv) in pop.params.iter().enumerate() {
            if pv.learn {
                let name = |l: Leaf| -> String {
                    match l {
                        Leaf::Param(i) => nt.params[i].name.clone(),
                        Leaf::StateDot(i) => format!("{}'", nt.states[i].name),
                        Leaf::State(i) => nt.states[i].name.clone(),
                        other => format!("{other:?}"),
                    }
                };
                let _ = p;
                plastic.push(format!(
                    "d{}.{}/dt = -eta * e * dmismatch/d{} = -eta * {}.e * ({})",
                    pop.name,
                    nt.params[i].name,
                    nt.params[i].name,
                    pop.name,
                    g.show(nd.dmismatch_dparam[i], &name)
                ));
            }
        }
    }
    if !plastic.is_empty() {
        if md {
            let _ = writeln!(o, "## plasticity\n\n```");
        } else {
            let _ = writeln!(o, "plasticity");
        }
        for line in plastic {
            let _ = writeln!(o, "  {line}");
        }
        if md {
            let _ = writeln!(o, "```");
        }
    }
    o
}

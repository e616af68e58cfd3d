//! The Rust backend: a derived step program as Rust source, for `glec emit rust` and the
//! `model!` macro.
//!
//! The generated module keeps the model's source and rebuilds its simulation (inputs,
//! datasets, optimiser, protocol) with `gle_runtime::embedded::simulation`; what it compiles
//! natively is the step itself: every elementwise statement as straight-line Rust over the
//! buffers, the tensor statements and commits as calls into the interpreter's own routines, and
//! every elementwise function through the same `apply` the interpreter and the JIT call — so
//! the three backends agree bit for bit.

use gle_derive::program::{Layout, Program, Stmt};
use gle_derive::sym::{Fun, Id, Leaf, Node};
use gle_ir::Model;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Where the generated code finds the model's source.
#[derive(Clone, Debug)]
pub enum Source<'a> {
    /// A file, relative to the embedding crate's `CARGO_MANIFEST_DIR` (read with
    /// `include_str!`, so editing it rebuilds the crate).
    File(&'a str),
    /// The source text itself (the inline `model!{ … }` form).
    Inline(&'a str),
}

/// The generated module, formatted for reading (prettyplease).
pub fn emit_rust(model: &Model, program: &Program, source: &Source) -> Result<String, String> {
    let text = emit_unformatted(model, program, source)?;
    let file = syn::parse_file(&text).map_err(|e| format!("internal error: generated Rust does not parse: {e}"))?;
    Ok(prettyplease::unparse(&file))
}

/// The generated module, unformatted (what the macro parses).
pub fn emit_unformatted(model: &Model, program: &Program, source: &Source) -> Result<String, String> {
    let mut out = String::new();
    let name = ident(&model.name);
    let explain = gle_derive::explain::explain(model, program, gle_derive::explain::Format::Text);
    let _ = writeln!(out, "/// Model `{}`, compiled to Rust by glec.", model.name);
    let _ = writeln!(out, "///");
    let _ = writeln!(out, "/// Derived dynamics:");
    let _ = writeln!(out, "///");
    let _ = writeln!(out, "/// ```text");
    for line in explain.lines() {
        let _ = writeln!(out, "/// {line}");
    }
    let _ = writeln!(out, "/// ```");
    let _ = writeln!(out, "pub mod {name} {{");
    let accessors = accessor_names(program);
    let step = step_fn(program, &accessors)?;
    let support: Vec<&str> = ["Builtin", "Fun", "Stmt", "apply", "commit", "tensor"]
        .into_iter()
        .filter(|item| step.contains(&format!("{item}(")) || step.contains(&format!("{item}::")))
        .collect();
    if !support.is_empty() {
        let _ = writeln!(out, "use ::gle_runtime::embedded::{{{}}};", support.join(", "));
    }
    let _ = writeln!(out, "use ::gle_runtime::{{RunError, Simulation, StepKernel}};");
    emit_source(&mut out, source);
    let f = gle_runtime::embedded::layout_fingerprint(program);
    let fingerprint = format!(
        "0x{:04x}_{:04x}_{:04x}_{:04x}",
        f >> 48,
        (f >> 32) & 0xffff,
        (f >> 16) & 0xffff,
        f & 0xffff
    );
    let _ = writeln!(
        out,
        "/// Fingerprint of the step program this code was generated from\n/// (`gle_runtime::embedded::layout_fingerprint`).\npub const LAYOUT: u64 = {fingerprint};"
    );
    emit_views(&mut out, program, &accessors);
    emit_model(&mut out, model, program, &accessors);
    out.push_str(&step);
    let _ = writeln!(out, "}}");
    Ok(out)
}

fn emit_source(out: &mut String, source: &Source) {
    match source {
        Source::File(path) => {
            let dir = match path.rfind('/') {
                Some(k) => &path[..k],
                None => "",
            };
            let _ = writeln!(
                out,
                "/// The model's source.\npub const SOURCE: &str = include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/\", {path:?}));"
            );
            let _ = writeln!(out, "/// The source's name in messages.\nconst NAME: &str = {path:?};");
            let _ = writeln!(
                out,
                "/// Directory that relative data paths are resolved against.\nfn base_dir() -> ::std::path::PathBuf {{ ::std::path::Path::new(env!(\"CARGO_MANIFEST_DIR\")).join({dir:?}) }}"
            );
        }
        Source::Inline(text) => {
            let _ = writeln!(out, "/// The model's source.\npub const SOURCE: &str = {text:?};");
            let _ = writeln!(
                out,
                "/// The source's name in messages.\nconst NAME: &str = \"<model!>\";"
            );
            let _ = writeln!(
                out,
                "/// Directory that relative data paths are resolved against.\nfn base_dir() -> ::std::path::PathBuf {{ ::std::path::PathBuf::from(env!(\"CARGO_MANIFEST_DIR\")) }}"
            );
        }
    }
}

/// A Rust identifier for a glec name (`h.tau_m` → `h_tau_m`; a staged value `h.u'` →
/// `h_u_next`).
fn ident(name: &str) -> String {
    let mut s: String = name
        .replace('\'', "_next")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if syn::parse_str::<syn::Ident>(&s).is_err() {
        s.push('_');
    }
    s
}

/// One distinct accessor name per buffer.
fn accessor_names(program: &Program) -> Vec<String> {
    let mut seen = HashSet::new();
    program
        .buffers
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let base = ident(&b.name);
            let name = if seen.contains(&base) {
                format!("{base}_{k}")
            } else {
                base
            };
            seen.insert(name.clone());
            name
        })
        .collect()
}

/// `State` (every population's variables) and `Params` (every learnable parameter): typed,
/// named views of the simulation's buffers.
fn emit_views(out: &mut String, program: &Program, names: &[String]) {
    let mut state = Vec::new();
    for p in &program.populations {
        for buf in [Some(p.u), Some(p.uhat), Some(p.r), Some(p.udot), p.e, p.v]
            .into_iter()
            .flatten()
        {
            state.push(buf);
        }
    }
    let params: Vec<usize> = program.learnables.iter().map(|l| l.param).collect();
    for (ty, what, bufs) in [
        ("State", "every population's variables", &state),
        ("Params", "every learnable parameter", &params),
    ] {
        if bufs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "/// Views of {what}.");
        let _ = writeln!(out, "#[derive(Clone, Copy, Debug)]");
        let _ = writeln!(out, "pub struct {ty}<'a> {{");
        for &b in bufs.iter() {
            let _ = writeln!(out, "/// `{}`.\npub {}: &'a [f64],", program.buffers[b].name, names[b]);
        }
        let _ = writeln!(out, "}}");
    }
    let _ = writeln!(out, "impl Model {{");
    for (ty, f, bufs) in [("State", "state", &state), ("Params", "params", &params)] {
        if bufs.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "/// The current values as a [`{ty}`].\npub fn {f}(&self) -> {ty}<'_> {{ {ty} {{"
        );
        for &b in bufs.iter() {
            let _ = writeln!(out, "{}: self.sim.buffer({b}),", names[b]);
        }
        let _ = writeln!(out, "}} }}");
    }
    let _ = writeln!(out, "}}");
}

fn emit_model(out: &mut String, model: &Model, program: &Program, names: &[String]) {
    let _ = writeln!(
        out,
        r#"/// The network with its compiled step.
pub struct Model {{ sim: Simulation }}
impl Model {{
/// Builds the network as the source declares it (initial values, inputs, datasets, seed).
pub fn new() -> Result<Self, RunError> {{
Self::build(None)
}}
/// [`Model::new`] for a run of at most `steps` steps, as `glec run --steps` runs it.
pub fn with_step_limit(steps: u64) -> Result<Self, RunError> {{
Self::build(Some(steps))
}}
fn build(max_steps: Option<u64>) -> Result<Self, RunError> {{
let mut sim = ::gle_runtime::embedded::simulation(NAME, SOURCE, &base_dir(), LAYOUT, max_steps)?;
let batch = sim.batch();
sim.set_kernel(compiled_step(batch));
Ok(Self {{ sim }})
}}
/// One training step: inputs, dynamics, errors and gradients, then the optimiser. A model
/// that reads a dataset starts a training pass over its first dataset when none is running.
pub fn step(&mut self) -> Result<(), RunError> {{
if !self.sim.model.datasets.is_empty() && self.sim.data_steps_left() == 0 {{
self.sim.begin_data_pass(0, false);
}}
self.sim.step()?;
self.sim.optimizer_step()
}}
/// `n` training steps.
pub fn run(&mut self, n: usize) -> Result<(), RunError> {{
for _ in 0..n {{ self.step()?; }}
Ok(())
}}
/// The whole run protocol of the source (phases, learning switches, data passes), as
/// `glec run` runs it.
pub fn run_protocol(&mut self) -> Result<(), RunError> {{
self.sim.run_protocol(&mut |_| Ok(()))
}}
/// The underlying simulation (every buffer, constant, recording and checkpoint).
pub fn simulation(&self) -> &Simulation {{ &self.sim }}
/// The underlying simulation, mutable (to set buffers or constants between steps).
pub fn simulation_mut(&mut self) -> &mut Simulation {{ &mut self.sim }}"#
    );
    for (k, c) in model.consts.iter().enumerate() {
        let _ = writeln!(
            out,
            "/// Sets constant `{0}` (read by the following steps).\npub fn set_{1}(&mut self, value: f64) {{ self.sim.set_constant({k}, value) }}",
            c.name,
            ident(&c.name)
        );
    }
    for (k, b) in program.buffers.iter().enumerate() {
        let shape = match b.layout {
            Layout::Batch => format!("batch × {}", b.len),
            Layout::Shared => format!("{}", b.len),
        };
        let _ = writeln!(
            out,
            "/// `{}` ({shape} values).\npub fn {}(&self) -> &[f64] {{ self.sim.buffer({k}) }}",
            b.name, names[k]
        );
    }
    let _ = writeln!(out, "}}");
}

/// The kernel type and the step function.
fn step_fn(program: &Program, accessors: &[String]) -> Result<String, String> {
    let mut out = String::new();
    let mut body = String::new();
    let mut names = BufNames::new(accessors);
    for stmt in &program.stmts {
        let call = match *stmt {
            Stmt::Map { len, ref outs } => {
                emit_map(&mut body, program, &mut names, len, outs)?;
                continue;
            }
            Stmt::MatVec {
                out,
                w,
                rows,
                cols,
                x,
                accumulate,
            } => format!(
                "MatVec {{ out: {}, w: {}, rows: {rows}, cols: {cols}, x: {}, accumulate: {accumulate} }}",
                names.get(out),
                names.get(w),
                names.get(x)
            ),
            Stmt::MatTVec { out, w, rows, cols, x } => format!(
                "MatTVec {{ out: {}, w: {}, rows: {rows}, cols: {cols}, x: {} }}",
                names.get(out),
                names.get(w),
                names.get(x)
            ),
            Stmt::Outer {
                grad,
                rows,
                cols,
                a,
                x,
                negate,
            } => format!(
                "Outer {{ grad: {}, rows: {rows}, cols: {cols}, a: {}, x: {}, negate: {negate} }}",
                names.get(grad),
                names.get(a),
                names.get(x)
            ),
            Stmt::Mean { grad, len, x, negate } => format!(
                "Mean {{ grad: {}, len: {len}, x: {}, negate: {negate} }}",
                names.get(grad),
                names.get(x)
            ),
            Stmt::Softmax { out, x, len } => {
                format!("Softmax {{ out: {}, x: {}, len: {len} }}", names.get(out), names.get(x))
            }
        };
        if stmt.computes_gradient() {
            let _ = writeln!(body, "if learn {{ tensor(data, batch, &Stmt::{call}); }}");
        } else {
            let _ = writeln!(body, "tensor(data, batch, &Stmt::{call});");
        }
    }
    for &(dst, src) in &program.commits {
        let _ = writeln!(body, "commit(data, {}, {});", names.get(dst), names.get(src));
    }
    for &(dst, src) in &program.swaps {
        let _ = writeln!(body, "data.swap({}, {});", names.get(dst), names.get(src));
    }
    for &b in &names.used {
        let _ = writeln!(
            out,
            "/// Buffer `{}`.\nconst {}: usize = {b};",
            program.buffers[b].name, names.names[b]
        );
    }
    let used = |word: &str| body.contains(word);
    let arg = |word: &str, used: bool| if used { word.to_string() } else { format!("_{word}") };
    let _ = writeln!(
        out,
        r#"/// The compiled step for `batch` rows, to install (`Simulation::set_kernel`) in a simulation
/// of this model built by other means, e.g. with overridden constants.
pub fn compiled_step(batch: usize) -> Box<dyn StepKernel> {{
Box::new(CompiledStep {{ batch }})
}}
/// The step program compiled by rustc.
struct CompiledStep {{ batch: usize }}
impl StepKernel for CompiledStep {{
fn run(&mut self, data: &mut [Vec<f64>], consts: &[f64], dt: f64, time: f64, learn: bool) -> Result<(), RunError> {{
step(data, consts, dt, time, learn, self.batch);
Ok(())
}}
}}
/// Every statement of one step, then the commits.
#[allow(clippy::needless_range_loop, clippy::approx_constant)]
fn step(data: &mut [Vec<f64>], {}: &[f64], {}: f64, {}: f64, {}: bool, batch: usize) {{
{body}}}"#,
        arg("consts", used("consts[")),
        arg("dt", used("= dt;")),
        arg("time", used("= time;")),
        arg("learn", used("if learn")),
    );
    Ok(out)
}

/// One `Map`: for every batch row and element, the expressions' nodes as `let`s, then the
/// stores (after all loads, as the statement's meaning requires).
fn emit_map(
    body: &mut String,
    program: &Program,
    names: &mut BufNames,
    len: usize,
    outs: &[(usize, Id)],
) -> Result<(), String> {
    let roots: Vec<Id> = outs.iter().map(|o| o.1).collect();
    let order = program.graph.reachable(&roots);
    let mut var: HashMap<Id, String> = HashMap::new();
    let mut lines = String::new();
    let mut uses_row = false;
    for id in order {
        let v = format!("v{}", var.len());
        let r = |x: &Id| var[x].clone();
        let value = match program.graph.node(id) {
            Node::Num(bits) => number(f64::from_bits(*bits)),
            Node::Leaf(Leaf::Buf(b)) => {
                let buf = &program.buffers[*b];
                match buf.layout {
                    Layout::Batch => {
                        uses_row = true;
                        format!("data[{}][{}]", names.get(*b), row_index(buf.len))
                    }
                    Layout::Shared => format!("data[{}][i]", names.get(*b)),
                }
            }
            Node::Leaf(Leaf::Const(c)) => format!("consts[{c}]"),
            Node::Leaf(Leaf::Dt) => "dt".into(),
            Node::Leaf(Leaf::Time) => "time".into(),
            Node::Leaf(other) => return Err(format!("internal error: unbound symbol {other:?} in the step program")),
            Node::Add(a, c) => format!("{} + {}", r(a), r(c)),
            Node::Mul(a, c) => format!("{} * {}", r(a), r(c)),
            Node::Div(a, c) => format!("{} / {}", r(a), r(c)),
            Node::Pow(a, c) => format!("{}.powf({})", r(a), r(c)),
            Node::Neg(a) => format!("-{}", r(a)),
            Node::Call(f, args) => {
                let args: Vec<String> = args.iter().map(r).collect();
                format!("apply({}, &[{}])", fun(*f), args.join(", "))
            }
        };
        let value = if value.contains("; //") {
            value
        } else {
            format!("{value};")
        };
        let _ = writeln!(lines, "let {v} = {value}");
        var.insert(id, v);
    }
    let writes_row = outs.iter().any(|(b, _)| program.buffers[*b].layout == Layout::Batch);
    let row = if uses_row || writes_row { "b" } else { "_b" };
    let _ = writeln!(body, "for {row} in 0..batch {{ for i in 0..{len} {{");
    body.push_str(&lines);
    for (b, id) in outs {
        let buf = &program.buffers[*b];
        let at = match buf.layout {
            Layout::Batch => row_index(buf.len),
            Layout::Shared => "i".into(),
        };
        let _ = writeln!(body, "data[{}][{at}] = {};", names.get(*b), var[id]);
    }
    let _ = writeln!(body, "}} }}");
    Ok(())
}

/// Constant names for the buffers the step touches (`L1_U` for `l1.u`).
struct BufNames {
    names: Vec<String>,
    used: std::collections::BTreeSet<usize>,
}

impl BufNames {
    fn new(accessors: &[String]) -> Self {
        let names = accessors
            .iter()
            .map(|a| {
                let upper = a.to_ascii_uppercase();
                if matches!(upper.as_str(), "LAYOUT" | "SOURCE" | "NAME") {
                    format!("{upper}_BUFFER")
                } else {
                    upper
                }
            })
            .collect();
        BufNames {
            names,
            used: Default::default(),
        }
    }

    /// The constant naming buffer `b`.
    fn get(&mut self, b: usize) -> String {
        self.used.insert(b);
        self.names[b].clone()
    }
}

/// The index of element `i` of batch row `b` in a buffer of `len` values per row.
fn row_index(len: usize) -> String {
    if len == 1 {
        "b + i".into()
    } else {
        format!("b * {len} + i")
    }
}

/// A literal that reads back as exactly `v`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "f64::NAN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "f64::INFINITY".into()
        } else {
            "f64::NEG_INFINITY".into()
        }
    } else if v.is_sign_negative() {
        format!("-{:?}_f64", -v)
    } else {
        format!("{v:?}_f64")
    }
}

fn fun(f: Fun) -> String {
    match f {
        Fun::B(b) => format!("Fun::B(Builtin::{b:?})"),
        Fun::Positive => "Fun::Positive".into(),
        Fun::Sign => "Fun::Sign".into(),
    }
}

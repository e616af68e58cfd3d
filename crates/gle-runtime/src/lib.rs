//! The runtime of glec: it allocates a step program's buffers, initialises parameters with seeded
//! draws, feeds inputs, executes steps with the reference interpreter, applies the optimiser,
//! runs the protocol's phases and records variables.
//!
//! The interpreter ([`interp`]) defines glec's semantics; it is the oracle for the other
//! backends.

pub mod inputs;
pub mod interp;
pub mod npy;
pub mod optim;
pub mod rng;

use gle_derive::program::{BufInit, Layout, Program, Stmt};
use gle_ir::{Connectivity, Distribution, Duration, Init, Model, Optimizer, ProtocolItem, Recorded, Source};
use gle_syntax::{Diagnostic, Span};
use interp::{Machine, Tape};
use std::path::{Path, PathBuf};

/// Why a run could not start or stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct RunError {
    /// What went wrong.
    pub message: String,
    /// The source construct responsible, when there is one.
    pub span: Option<Span>,
}

impl RunError {
    /// An error without a source location.
    pub fn new(message: impl Into<String>) -> Self {
        RunError {
            message: message.into(),
            span: None,
        }
    }

    /// An error pointing at `span`.
    pub fn at(message: impl Into<String>, span: Span) -> Self {
        RunError {
            message: message.into(),
            span: Some(span),
        }
    }

    /// As a diagnostic (code `E0801`); without a span it points at the start of the file.
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::error("E0801", self.message.clone(), self.span.unwrap_or_default()).with_label("here")
    }
}

/// A model being simulated: its buffers, inputs, optimiser state and clock.
pub struct Simulation {
    /// The step program.
    pub program: Program,
    /// The checked model.
    pub model: Model,
    batch: usize,
    data: Vec<Vec<f64>>,
    lens: Vec<usize>,
    tapes: Vec<Option<Tape>>,
    consts: Vec<f64>,
    inputs: Vec<inputs::InputStream>,
    optim: optim::OptimizerState,
    step: u64,
    scratch: Vec<f64>,
    /// Buffers checked for NaN and Inf after every step.
    watch: Vec<usize>,
    /// The protocol stops after this many steps (`glec run --steps`).
    limit: Option<u64>,
}

impl Simulation {
    /// Allocates and initialises a simulation of `model` for up to `total_steps` steps; relative
    /// file names are resolved against `base_dir` (the model file's directory).
    pub fn new(model: Model, program: Program, base_dir: &Path, total_steps: usize) -> Result<Self, RunError> {
        let batch = model.protocol.batch;
        let seed = model.protocol.seed;
        let mut data = Vec::with_capacity(program.buffers.len());
        let mut lens = Vec::with_capacity(program.buffers.len());
        for (k, buf) in program.buffers.iter().enumerate() {
            let size = match buf.layout {
                Layout::Batch => buf.len * batch,
                Layout::Shared => buf.len,
            };
            let mut rng = rng::Rng::new(seed, k as u64 + 1);
            let values = match &buf.init {
                BufInit::Zero | BufInit::Input(_) => vec![0.0; size],
                BufInit::NeuronParam { pop, param } => {
                    let pv = &model.populations[*pop].params[*param];
                    let mut v = Vec::with_capacity(size);
                    for (count, init) in &pv.segments {
                        v.extend(init_values(init, *count, 1, &mut rng, base_dir, pv.span)?);
                    }
                    check_time_constant(&model, *pop, *param, &v, pv.span)?;
                    v
                }
                BufInit::Weights(p) => {
                    let pr = &model.projections[*p];
                    let (rows, cols) = pr.shape;
                    match &pr.connectivity {
                        Connectivity::Dense { init, .. } => {
                            init_values(init, rows * cols, cols, &mut rng, base_dir, pr.span)?
                        }
                        Connectivity::Diagonal { init } => init_values(init, rows, 1, &mut rng, base_dir, pr.span)?,
                        Connectivity::Identity => vec![1.0; rows],
                    }
                }
                BufInit::Bias(p) => {
                    let pr = &model.projections[*p];
                    match &pr.connectivity {
                        Connectivity::Dense { bias: Some(init), .. } => {
                            init_values(init, pr.shape.0, pr.shape.1, &mut rng, base_dir, pr.span)?
                        }
                        _ => vec![0.0; size],
                    }
                }
                BufInit::Feedback(p) => {
                    let pr = &model.projections[*p];
                    let gle_ir::Feedback::Random(d) = pr.feedback else {
                        return Err(RunError::new("feedback matrix without a distribution"));
                    };
                    init_values(&Init::Random(d), size, pr.shape.1, &mut rng, base_dir, pr.span)?
                }
            };
            if values.len() != size {
                return Err(RunError::at(
                    format!("`{}` needs {size} values, got {}", buf.name, values.len()),
                    Span::default(),
                ));
            }
            data.push(values);
            lens.push(buf.len);
        }
        let mut tapes = Vec::with_capacity(program.stmts.len());
        for s in &program.stmts {
            tapes.push(match s {
                Stmt::Map { len, outs } => {
                    Some(Tape::new(&program.graph, &program, *len, outs).map_err(RunError::new)?)
                }
                _ => None,
            });
        }
        let inputs = model
            .inputs
            .iter()
            .map(|inp| inputs::InputStream::new(inp, &model, batch, total_steps, seed, base_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let optim = optim::OptimizerState::new(&program, &data);
        let consts = model.consts.iter().map(|c| c.value).collect();
        let watch = program
            .populations
            .iter()
            .flat_map(|p| [p.u, p.r].into_iter().chain(p.e))
            .collect();
        Ok(Simulation {
            program,
            model,
            batch,
            data,
            lens,
            tapes,
            consts,
            inputs,
            optim,
            step: 0,
            scratch: Vec::new(),
            watch,
            limit: None,
        })
    }

    /// Makes [`Simulation::run_protocol`] stop after `steps` steps in all.
    pub fn set_step_limit(&mut self, steps: u64) {
        self.limit = Some(steps);
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The contents of buffer `id`.
    pub fn buffer(&self, id: usize) -> &[f64] {
        &self.data[id]
    }

    /// The id of the buffer named `name` (`h.u`, `x_h.W`).
    pub fn buffer_id(&self, name: &str) -> Option<usize> {
        self.program.buffers.iter().position(|b| b.name == name)
    }

    /// Current value of constant `i`.
    pub fn constant(&self, i: usize) -> f64 {
        self.consts[i]
    }

    /// Sets constant `i` (`--set`, phase overrides).
    pub fn set_constant(&mut self, i: usize, value: f64) {
        self.consts[i] = value;
    }

    /// Overwrites a buffer (for tests and parameter overrides); lengths must match.
    pub fn set_buffer(&mut self, id: usize, values: &[f64]) {
        self.data[id].copy_from_slice(values);
    }

    /// Advances the network by one step: inputs of this step, every statement, commit. Stops
    /// with an error naming the variable, population, neuron and step at the first NaN or Inf.
    pub fn step(&mut self) -> Result<(), RunError> {
        let n = self.step as usize;
        for (k, inp) in self.inputs.iter().enumerate() {
            let buf = self.program.inputs[k];
            inp.fill(n, &self.consts, self.model.protocol.dt, &mut self.data[buf])?;
        }
        let time = n as f64 * self.model.protocol.dt;
        let mut m = Machine {
            data: &mut self.data,
            lens: &self.lens,
            consts: &self.consts,
            dt: self.model.protocol.dt,
            time,
            batch: self.batch,
        };
        for (stmt, tape) in self.program.stmts.iter().zip(&self.tapes) {
            match tape {
                Some(t) => m.map(t, &mut self.scratch),
                None => m.tensor(stmt),
            }
        }
        for &(dst, src) in &self.program.commits {
            let (a, b) = if dst < src {
                let (lo, hi) = self.data.split_at_mut(src);
                (&mut lo[dst], &hi[0])
            } else {
                let (lo, hi) = self.data.split_at_mut(dst);
                (&mut hi[0], &lo[src])
            };
            a.copy_from_slice(b);
        }
        self.step += 1;
        self.check_finite()
    }

    fn check_finite(&self) -> Result<(), RunError> {
        for &b in &self.watch {
            if let Some(k) = self.data[b].iter().position(|v| !v.is_finite()) {
                let len = self.lens[b];
                return Err(RunError::new(format!(
                    "numerical blow-up: `{}` is {} for neuron {} (batch row {}) at step {}",
                    self.program.buffers[b].name,
                    self.data[b][k],
                    k % len,
                    k / len,
                    self.step - 1
                )));
            }
        }
        Ok(())
    }

    /// Applies one optimiser step to every learnable parameter, then the clamps.
    pub fn optimizer_step(&mut self) -> Result<(), RunError> {
        self.optim
            .step(&self.model.learning.optimizer, &self.program, &mut self.data);
        for l in &self.program.learnables {
            if let Some(k) = self.data[l.param].iter().position(|v| !v.is_finite()) {
                return Err(RunError::new(format!(
                    "numerical blow-up: parameter `{}` is {} at element {k} after the optimiser step of step {}",
                    l.name,
                    self.data[l.param][k],
                    self.step.saturating_sub(1)
                )));
            }
        }
        Ok(())
    }

    /// Runs the model's protocol, calling `observe` after every step (for records and metrics).
    pub fn run_protocol(
        &mut self,
        observe: &mut dyn FnMut(&Simulation) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let items = self.model.protocol.items.clone();
        self.run_items(&items, observe)
    }

    fn run_items(
        &mut self,
        items: &[ProtocolItem],
        observe: &mut dyn FnMut(&Simulation) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        for item in items {
            match item {
                ProtocolItem::Repeat { count, items } => {
                    for _ in 0..*count {
                        self.run_items(items, observe)?;
                    }
                }
                ProtocolItem::Phase(phase) => {
                    let Duration::Steps(n) = phase.duration else {
                        return Err(RunError::at("phases over datasets are not run yet", phase.span));
                    };
                    let saved_consts = self.consts.clone();
                    for (c, v) in &phase.overrides {
                        self.consts[*c] = *v;
                    }
                    let mut saved_params = Vec::new();
                    for (pop, param, v) in &phase.param_overrides {
                        let buf = self.program.populations[*pop].params[*param];
                        saved_params.push((buf, self.data[buf].clone()));
                        self.data[buf].iter_mut().for_each(|x| *x = *v);
                    }
                    for _ in 0..n {
                        if self.limit.is_some_and(|l| self.step >= l) {
                            break;
                        }
                        self.step()?;
                        observe(self)?;
                        if phase.learn {
                            self.optimizer_step()?;
                        }
                    }
                    for (buf, values) in saved_params.into_iter().rev() {
                        self.data[buf] = values;
                    }
                    self.consts = saved_consts;
                }
            }
        }
        Ok(())
    }

    /// Total number of steps the protocol runs.
    pub fn protocol_steps(model: &Model) -> Result<usize, RunError> {
        fn count(items: &[ProtocolItem]) -> Result<usize, RunError> {
            let mut n = 0usize;
            for item in items {
                n = n.saturating_add(match item {
                    ProtocolItem::Phase(p) => match p.duration {
                        Duration::Steps(s) => s,
                        Duration::Data { .. } => {
                            return Err(RunError::at("phases over datasets are not run yet", p.span));
                        }
                    },
                    ProtocolItem::Repeat { count: c, items } => c.saturating_mul(count(items)?),
                });
            }
            Ok(n)
        }
        count(&model.protocol.items)
    }

    /// The values of a recorded quantity now: all batch rows of a population variable or
    /// input, or a projection's weights.
    pub fn recorded(&self, r: Recorded) -> Vec<f64> {
        match r {
            Recorded::PopVar(p, var) => {
                let pb = &self.program.populations[p];
                let nt = &self.model.neurons[self.model.populations[p].neuron];
                let buf = match var {
                    gle_ir::NeuronVar::State(_) => pb.u,
                    gle_ir::NeuronVar::Param(i) => pb.params[i],
                    gle_ir::NeuronVar::Def(d) if d == nt.rate => pb.r,
                    gle_ir::NeuronVar::Def(d) if Some(d) == nt.mismatch => pb.e.unwrap_or(pb.udot),
                    _ => pb.uhat,
                };
                self.data[buf].clone()
            }
            Recorded::Input(i) => self.data[self.program.inputs[i]].clone(),
            Recorded::Weights(k) => {
                let (w, _) = self.program.projections[k];
                if w == usize::MAX {
                    vec![1.0; self.model.projections[k].shape.0]
                } else {
                    self.data[w].clone()
                }
            }
            Recorded::AllWeights => self
                .program
                .learnables
                .iter()
                .flat_map(|l| self.data[l.param].clone())
                .collect(),
        }
    }
}

/// Draws or reads `count` values; `fan_in` sizes `fan_in_uniform`.
fn init_values(
    init: &Init,
    count: usize,
    fan_in: usize,
    rng: &mut rng::Rng,
    base: &Path,
    span: Span,
) -> Result<Vec<f64>, RunError> {
    Ok(match init {
        Init::Const(v) => vec![*v; count],
        Init::Values(vs) => vs.clone(),
        Init::Random(d) => (0..count)
            .map(|_| match *d {
                Distribution::Uniform { lo, hi } => rng.uniform(lo, hi),
                Distribution::Normal { mean, std } => rng.normal(mean, std),
                Distribution::FanInUniform => {
                    let k = 1.0 / (fan_in.max(1) as f64).sqrt();
                    rng.uniform(-k, k)
                }
            })
            .collect(),
        Init::File(f) => {
            let path: PathBuf = base.join(f);
            let a = npy::read(&path).map_err(|e| RunError::at(e, span))?;
            if a.data.len() != count {
                return Err(RunError::at(
                    format!(
                        "`{}` holds {} values (shape {:?}), but {count} are needed",
                        path.display(),
                        a.data.len(),
                        a.shape
                    ),
                    span,
                ));
            }
            a.data
        }
    })
}

/// Drawn or loaded time constants must be positive and at least dt, like written ones.
fn check_time_constant(model: &Model, pop: usize, param: usize, values: &[f64], span: Span) -> Result<(), RunError> {
    let p = &model.populations[pop];
    let decl = &model.neurons[p.neuron].params[param];
    if !decl.time_constant {
        return Ok(());
    }
    let dt = model.protocol.dt;
    if let Some((k, v)) = values.iter().enumerate().find(|(_, v)| v.is_nan() || **v < dt) {
        return Err(RunError::at(
            format!(
                "time constant `{}` of neuron {k} of `{}` is {v}, below the time step dt = {dt} (explicit Euler needs τ ≥ dt)",
                decl.name, p.name
            ),
            span,
        ));
    }
    Ok(())
}

/// Names a projection's presynaptic side (for messages).
pub fn pre_name(model: &Model, s: Source) -> String {
    match s {
        Source::Input(i) => model.inputs[i].name.clone(),
        Source::Population(p, _) => model.populations[p].name.clone(),
    }
}

/// The optimiser as configured, for messages.
pub fn optimizer_name(o: &Optimizer) -> &'static str {
    match o {
        Optimizer::Sgd { .. } => "sgd",
        Optimizer::Momentum { .. } => "momentum",
        Optimizer::Adam { .. } => "adam",
    }
}

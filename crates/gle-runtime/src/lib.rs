//! The runtime of glec: it allocates a step program's buffers, initialises parameters with seeded
//! draws, feeds inputs, executes steps with the reference interpreter, applies the optimiser,
//! runs the protocol's phases and records variables.
//!
//! The interpreter ([`interp`]) defines glec's semantics; it is the oracle for the other
//! backends.

mod adjoint;
mod checkpoint;
mod chunk;
pub mod data;
pub mod embedded;
pub mod inputs;
pub mod interp;
pub mod metrics;
pub mod npy;
pub mod optim;
pub mod rng;
pub mod zip;

use gle_derive::program::{BufInit, Layout, Program, Stmt};
use gle_ir::{Connectivity, Distribution, Duration, Init, Model, Optimizer, ProtocolItem, Recorded, Source};
use gle_syntax::{Diagnostic, Span};
use interp::{Machine, Tape};
use std::path::{Path, PathBuf};

/// A compiled implementation of one step's statements and commits (the Cranelift JIT). The
/// interpreter is used when a simulation has none; both must compute the same values.
pub trait StepKernel {
    /// Executes the step program's statements and commits on `data` (every buffer, laid out as
    /// the program says for `batch` rows; the commits copy, then exchange the `swaps`' buffers
    /// in `data`); without `learn`, the statements that only compute
    /// gradients ([`gle_derive::program::Stmt::computes_gradient`]) are skipped.
    fn run(&mut self, data: &mut [Vec<f64>], consts: &[f64], dt: f64, time: f64, learn: bool) -> Result<(), RunError>;

    /// The threads that run a step together (1 unless the kernel was compiled for a team).
    fn threads(&self) -> usize {
        1
    }

    /// Runs `job(t)` on every thread `t < threads()` at once (the calling thread is 0) and
    /// returns when all have finished: the optimiser uses the step's team.
    fn run_on_threads(&mut self, job: &(dyn Fn(usize) + Sync)) {
        job(0);
    }

    /// Learnables (indices into the program's `learnables`, all of them among
    /// [`sgd_learnables`]) whose plain-SGD update `θ ← θ − lr·g` this kernel applies itself in
    /// every learning step, in the pass that computes `g`, with the rates of [`Self::set_rates`];
    /// it then leaves their gradient buffers unwritten, and the optimiser skips them.
    fn absorbed_updates(&self) -> &[usize] {
        &[]
    }

    /// The rates of the absorbed updates for the next step, in the order of
    /// [`Self::absorbed_updates`].
    fn set_rates(&mut self, _rates: &[f64]) {}

    /// The watched buffers ([`Program::watched`]) whose every value this kernel checks as it
    /// computes it: the simulation scans only the others after a step, and scans all of them
    /// only when [`Self::all_finite`] says a checked value was NaN or infinite.
    fn checked_buffers(&self) -> &[usize] {
        &[]
    }

    /// Whether every value of the [`Self::checked_buffers`] computed in the last step was finite.
    fn all_finite(&self) -> bool {
        true
    }

    /// Takes the steps of `chunk` in a row, as [`Self::run`] would one by one: before each, the
    /// feeds' values for that step are written into their buffers (and, from the second on,
    /// `chunk.between` takes the optimiser's step, stopping the run before the step if it left
    /// a parameter non-finite); after each (and its
    /// commits), the taps' buffers are copied out, and the kernel stops if a value of its
    /// [`Self::checked_buffers`] or of `chunk.scanned` is NaN or infinite. Returns the steps
    /// taken. The default calls [`Self::run`] per step ([`run_step_by_step`]); a kernel that
    /// loops natively overrides it.
    fn run_steps(
        &mut self,
        data: &mut [Vec<f64>],
        consts: &[f64],
        dt: f64,
        learn: bool,
        chunk: &mut Chunk,
    ) -> Result<usize, RunError> {
        run_step_by_step(self, data, consts, dt, learn, chunk)
    }

    /// Applies `update` (the optimiser's step after the last step) to the parameters in `data`;
    /// returns the first parameter value it left NaN or infinite, as `(learnable, element)`
    /// ([`optim::StepUpdate::apply`]'s). The default shares it between the kernel's threads as
    /// [`optim::StepUpdate::apply`] does; a team may share it as its steps share parameters.
    fn apply_update(&mut self, data: &mut [Vec<f64>], update: optim::StepUpdate) -> Option<(usize, usize)> {
        update.apply(data, &mut |job| self.run_on_threads(job))
    }

    /// Applies `update` (the optimiser's step after the last step) to the parameters in `data`
    /// and then, unless it left a parameter value NaN or infinite, takes a step as
    /// [`Self::run`] does; returns that value's `(learnable, element)` (the first, as
    /// [`optim::StepUpdate::apply`] finds it), and then the step is not taken. The default
    /// calls [`update_then_run`]; a team may do both in one call of its threads.
    fn run_after_update(
        &mut self,
        data: &mut [Vec<f64>],
        consts: &[f64],
        dt: f64,
        time: f64,
        learn: bool,
        update: optim::StepUpdate,
    ) -> Result<Option<(usize, usize)>, RunError> {
        update_then_run(self, data, consts, dt, time, learn, update)
    }
}

/// Spare capacity after the values of every buffer of a simulation (and of the optimiser's
/// moments), in `f64`s: 4 KiB, a page. A processor's prefetchers fetch lines beyond the ones a
/// core reads, but never across a page boundary, so with this gap between any two buffers a
/// core reading one never fetches lines of another. This matters for a team of threads on a
/// host whose cores share no cache: where a thread reads a buffer another thread wrote (a
/// neighbouring layer's rates), prefetches of the buffers next to it in memory took lines the
/// other thread was about to write, each write then waiting for its line to come back (MNIST-1D
/// 15k at batch 1 on two threads: 41,500 → 47,400 steps/s, BENCHMARKS.md).
pub const BUFFER_GUARD: usize = 512;

/// A buffer holding `values` with [`BUFFER_GUARD`] values of spare capacity after them.
pub(crate) fn guarded(values: &[f64]) -> Vec<f64> {
    let mut buffer = Vec::with_capacity(values.len() + BUFFER_GUARD);
    buffer.extend_from_slice(values);
    buffer
}

/// Puts `values` into `buffer` in place (keeping its allocation, and so its guard), or replaces
/// it where their lengths differ.
fn refill(buffer: &mut Vec<f64>, values: Vec<f64>) {
    if buffer.len() == values.len() {
        buffer.copy_from_slice(&values);
    } else {
        *buffer = guarded(&values);
    }
}

/// [`StepKernel::run_after_update`] by [`optim::StepUpdate::apply`] on the kernel's threads,
/// then [`StepKernel::run`].
pub fn update_then_run<K: StepKernel + ?Sized>(
    kernel: &mut K,
    data: &mut [Vec<f64>],
    consts: &[f64],
    dt: f64,
    time: f64,
    learn: bool,
    update: optim::StepUpdate,
) -> Result<Option<(usize, usize)>, RunError> {
    let bad = update.apply(data, &mut |job| kernel.run_on_threads(job));
    if bad.is_none() {
        kernel.run(data, consts, dt, time, learn)?;
    }
    Ok(bad)
}

/// Several steps a [`StepKernel`] takes in one call ([`StepKernel::run_steps`]): what the
/// simulation materialised for them, and where the kernel leaves what it must see of each.
pub struct Chunk<'a> {
    /// The index of the first step (step `k` of the chunk runs at time `(first_step + k)·dt`).
    pub first_step: u64,
    /// Steps to take (at most; fewer after a blow-up).
    pub steps: usize,
    /// `(buffer, values)`: the buffer's contents for each step in turn (`steps` × its length),
    /// written into it before the step (inputs, noise, data targets).
    pub feeds: &'a [(usize, Vec<f64>)],
    /// `(buffer, values)`: filled with the buffer's contents after each step in turn.
    pub taps: &'a mut [(usize, Vec<f64>)],
    /// Watched buffers the kernel does not check as it computes them: it scans them after
    /// every step.
    pub scanned: &'a [usize],
    /// The optimiser's steps between two steps (when learning).
    pub between: Option<&'a mut BetweenSteps<'a>>,
}

/// The optimiser's steps between the steps of a [`Chunk`]: each on the parameters as the steps
/// so far left them.
pub struct BetweenSteps<'a> {
    optim: &'a mut optim::OptimizerState,
    optimizer: &'a Optimizer,
    dt: f64,
    consts: &'a [f64],
    program: &'a Program,
    /// The learnables the kernel updates itself.
    skip: &'a [usize],
    /// The threads the optimiser shares its work between.
    threads: usize,
    /// The first parameter value a step left NaN or infinite, as `(learnable, element)`.
    bad: Option<(usize, usize)>,
}

impl BetweenSteps<'_> {
    /// The optimiser's step, its work shared by `run` as [`optim::StepUpdate::apply`] shares
    /// it; false when it left a parameter value NaN or infinite (the run stops there).
    pub fn step(&mut self, data: &mut [Vec<f64>], run: &mut dyn FnMut(&optim::Job)) -> bool {
        let bad = self.prepare().apply(data, run);
        self.finish(bad)
    }

    /// Prepares the optimiser's step for a kernel that applies it itself
    /// ([`StepKernel::run_after_update`]); [`Self::finish`] takes what it found.
    pub fn prepare(&mut self) -> optim::StepUpdate<'_> {
        self.optim.prepare(
            self.optimizer,
            self.dt,
            self.consts,
            self.program,
            self.skip,
            self.threads,
        )
    }

    /// Withdraws the step [`Self::prepare`] handed out, which was not applied (the step before
    /// it blew up): the optimiser counts its steps as before.
    pub fn withdraw(&mut self) {
        self.optim.t -= 1;
    }

    /// Records the first non-finite parameter value, if any, that the step [`Self::prepare`]
    /// handed out left; false when there is one (the run stops there).
    pub fn finish(&mut self, bad: Option<(usize, usize)>) -> bool {
        self.bad = self.bad.or(bad);
        bad.is_none()
    }
}

/// Writes the values of step `k` of a run's feeds ([`Chunk::feeds`]) into their buffers.
pub fn write_feeds(feeds: &[(usize, Vec<f64>)], data: &mut [Vec<f64>], k: usize) {
    for (buf, values) in feeds {
        let len = data[*buf].len();
        data[*buf].copy_from_slice(&values[k * len..(k + 1) * len]);
    }
}

/// Copies the taps' buffers ([`Chunk::taps`]) into their values for step `k` of a run.
pub fn copy_taps(taps: &mut [(usize, Vec<f64>)], data: &[Vec<f64>], k: usize) {
    for (buf, values) in taps.iter_mut() {
        let len = data[*buf].len();
        values[k * len..(k + 1) * len].copy_from_slice(&data[*buf]);
    }
}

/// [`StepKernel::run_steps`] by one call of [`StepKernel::run`] per step.
pub fn run_step_by_step<K: StepKernel + ?Sized>(
    kernel: &mut K,
    data: &mut [Vec<f64>],
    consts: &[f64],
    dt: f64,
    learn: bool,
    chunk: &mut Chunk,
) -> Result<usize, RunError> {
    for k in 0..chunk.steps {
        write_feeds(chunk.feeds, data, k);
        let time = (chunk.first_step + k as u64) as f64 * dt;
        match chunk.between.as_deref_mut().filter(|_| k > 0) {
            Some(between) => {
                let bad = kernel.run_after_update(data, consts, dt, time, learn, between.prepare())?;
                if !between.finish(bad) {
                    // The step was not taken: its inputs leave the buffers as the last step did.
                    write_feeds(chunk.feeds, data, k - 1);
                    return Ok(k);
                }
            }
            None => kernel.run(data, consts, dt, time, learn)?,
        }
        copy_taps(chunk.taps, data, k);
        let finite = |b: &usize| data[*b].iter().all(|v| v.is_finite());
        if !kernel.all_finite() || !chunk.scanned.iter().all(finite) {
            return Ok(k + 1);
        }
    }
    Ok(chunk.steps)
}

/// The learnables whose optimiser update a kernel may apply in the step itself
/// ([`StepKernel::absorbed_updates`]): plain SGD (`θ ← θ − lr·g`, nothing else to keep) on
/// parameters without a clamp or an explicit rule, in a model that learns every step (not in
/// the adjoint error mode, whose updates wait for the end of each window).
pub fn sgd_learnables(model: &Model, program: &Program) -> Vec<usize> {
    if !matches!(model.learning.optimizer, Optimizer::Sgd { .. }) || program.adjoint.is_some() {
        return Vec::new();
    }
    (0..program.learnables.len())
        .filter(|&k| {
            let l = &program.learnables[k];
            l.rule.is_none() && l.clamp_min.is_none()
        })
        .collect()
}

/// Refuses buffers that cannot fit in `available` bytes of memory (when known) or in the address
/// space: a batch mistyped as `1e8` would otherwise have the machine swap, or the process killed,
/// before the first step.
pub fn check_memory(program: &Program, batch: usize, available: Option<u64>) -> Result<(), RunError> {
    let values = program.buffers.iter().try_fold(0usize, |sum, b| {
        let n = match b.layout {
            Layout::Batch => b.len.checked_mul(batch)?,
            Layout::Shared => b.len,
        };
        sum.checked_add(n)
    });
    let gigabytes = |bytes: f64| format!("{:.1} GB", bytes / 1e9);
    let remedy = if batch > 1 {
        "lower `batch`"
    } else {
        "smaller populations or projections are needed"
    };
    let Some(bytes) = values
        .and_then(|v| v.checked_mul(8))
        .and_then(|b| isize::try_from(b).ok())
    else {
        return Err(RunError::new(format!(
            "the simulation's buffers at batch {batch} exceed the address space; {remedy}"
        )));
    };
    match available {
        Some(free) if bytes as u64 > free => Err(RunError::new(format!(
            "the simulation's buffers need {} at batch {batch}, more than the {} of memory available; {remedy}",
            gigabytes(bytes as f64),
            gigabytes(free as f64)
        ))),
        _ => Ok(()),
    }
}

/// The memory available to new allocations (Linux's `MemAvailable`), if the system says.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kilobytes.checked_mul(1024)
}

/// Parameters with fewer elements in all are updated by the calling thread alone: handing a few
/// thousand updates to a team costs about what they take.
const PARALLEL_OPTIMIZER_MIN: usize = 8192;

/// Callbacks of [`Simulation::run_protocol_with`].
pub struct Hooks<'a> {
    /// After steps (records): at least after every step whose index is a multiple of
    /// [`Hooks::observe_every`]; between them the protocol may take several steps in one call
    /// of a kernel ([`StepKernel::run_steps`]).
    pub observe: &'a mut dyn FnMut(&Simulation) -> Result<(), RunError>,
    /// The steps [`Hooks::observe`] must see: those whose index is a multiple of this (1: every
    /// step; 0: none).
    pub observe_every: u64,
    /// After every phase (metrics).
    pub report: &'a mut dyn FnMut(&PhaseReport) -> Result<(), RunError>,
    /// With `(step, bytes)` of every checkpoint.
    pub save: &'a mut dyn FnMut(u64, Vec<u8>) -> Result<(), RunError>,
}

/// Loss and accuracy of one phase.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseReport {
    /// Phase name.
    pub name: String,
    /// Steps of the phase run so far (before and after a resume).
    pub steps: usize,
    /// Total steps of the run at the phase's end.
    pub end_step: u64,
    /// Mean cost over the phase's steps and batch rows (`None` without an output cost).
    pub loss: Option<f64>,
    /// Fraction of samples classified correctly by the read-out (`None` without one).
    pub accuracy: Option<f64>,
    /// Whether the phase learned with an output cost: the cost's error then pulls the output
    /// towards the target while the loss and accuracy are read, so they overstate what the
    /// network alone answers (a phase with `learn off` and the cost weight at 0 measures that).
    pub nudged: bool,
    /// The learning-rate multiplier of the plateau schedule after the phase.
    pub lr_scale: f64,
}

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
    /// Buffers written before every step: the inputs, then noise and data targets.
    fed: Vec<usize>,
    /// Reused storage of the steps taken in one kernel call ([`StepKernel::run_steps`]).
    chunk: chunk::Storage,
    /// Buffers checked for NaN and Inf after every step.
    watch: Vec<usize>,
    /// Those the simulation scans itself after a kernel's step (the kernel checks the others).
    scanned: Vec<usize>,
    /// Whether steps compute gradients: false during phases that do not learn.
    learning: bool,
    /// The protocol stops after this many steps (`glec run --steps`).
    limit: Option<u64>,
    /// Loaded datasets.
    datasets: Vec<data::LoadedDataset>,
    /// The pass over a dataset split of the running data phase.
    feed: Option<data::Feed>,
    /// Steps taken in the current pass.
    feed_step: usize,
    /// Training passes started per dataset (seeds the shuffles).
    epochs: Vec<u64>,
    /// Best monitored loss of the plateau schedule.
    best_loss: Option<f64>,
    /// Epochs without improvement.
    bad_epochs: usize,
    /// Saved values of the parameters the running phase overrides (restored at its end).
    saved_params: Vec<(usize, Vec<f64>)>,
    /// Loss and accuracy accumulators of the running phase.
    metrics: metrics::PhaseMetrics,
    /// Set by [`Simulation::restore`]: the protocol resumes at this step.
    resume: Option<u64>,
    /// A compiled step (the JIT); `None` runs the reference interpreter.
    kernel: Option<Box<dyn StepKernel>>,
    /// The kernel's [`StepKernel::absorbed_updates`], fixed when it is installed.
    absorbed: Vec<usize>,
    /// The rates handed to the kernel each learning step (see [`StepKernel::set_rates`]).
    rates: Vec<f64>,
    /// The window of the adjoint error mode (`errors adjoint(…)`).
    adjoint: Option<adjoint::Recorder>,
    /// Steps between checkpoints (`checkpoint N` in the run protocol).
    checkpoint_every: Option<u64>,
}

impl Simulation {
    /// Allocates and initialises a simulation of `model` for up to `total_steps` steps; relative
    /// file names are resolved against `base_dir` (the model file's directory).
    pub fn new(model: Model, program: Program, base_dir: &Path, total_steps: usize) -> Result<Self, RunError> {
        let batch = model.protocol.batch;
        let seed = model.protocol.seed;
        check_memory(&program, batch, available_memory())?;
        let mut data = Vec::with_capacity(program.buffers.len());
        let mut lens = Vec::with_capacity(program.buffers.len());
        for buf in &program.buffers {
            let size = match buf.layout {
                Layout::Batch => buf.len * batch,
                Layout::Shared => buf.len,
            };
            // One random stream per buffer, named by the buffer: a population's or projection's
            // initial values depend on the seed and its name only, so model variants (e.g. GLE
            // and instantaneous errors) start from the same student.
            let mut rng = rng::Rng::new(seed, rng::name_hash(&buf.name));
            let values = match &buf.init {
                BufInit::Zero | BufInit::Input(_) | BufInit::DataTarget { .. } | BufInit::Noise => vec![0.0; size],
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
            data.push(guarded(&values));
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
        let datasets = model
            .datasets
            .iter()
            .map(|d| data::LoadedDataset::load(d, base_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = model
            .inputs
            .iter()
            .map(|inp| inputs::InputStream::new(inp, &model, batch, total_steps, seed, base_dir, &datasets))
            .collect::<Result<Vec<_>, _>>()?;
        let optim = optim::OptimizerState::new(&program, &data);
        let consts = model.consts.iter().map(|c| c.value).collect();
        let watch = program.watched();
        let fed = program
            .inputs
            .iter()
            .copied()
            .chain(
                (0..program.buffers.len())
                    .filter(|&b| matches!(program.buffers[b].init, BufInit::DataTarget { .. } | BufInit::Noise)),
            )
            .collect();
        let adjoint = program
            .adjoint
            .clone()
            .map(|plan| adjoint::Recorder::new(plan, &program, &data));
        Ok(Simulation {
            adjoint,
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
            scanned: watch.clone(),
            watch,
            fed,
            chunk: chunk::Storage::default(),
            learning: true,
            limit: None,
            epochs: vec![0; datasets.len()],
            datasets,
            feed: None,
            feed_step: 0,
            best_loss: None,
            bad_epochs: 0,
            saved_params: Vec::new(),
            metrics: metrics::PhaseMetrics::default(),
            resume: None,
            checkpoint_every: None,
            kernel: None,
            absorbed: Vec::new(),
            rates: Vec::new(),
        })
    }

    /// Runs steps with `kernel` instead of the interpreter.
    ///
    /// # Panics
    /// If the kernel absorbs the update of a learnable that [`sgd_learnables`] does not list
    /// (a bug in the kernel's construction, not a property of the model).
    pub fn set_kernel(&mut self, kernel: Box<dyn StepKernel>) {
        let allowed = sgd_learnables(&self.model, &self.program);
        assert!(
            kernel.absorbed_updates().iter().all(|k| allowed.contains(k)),
            "a kernel may absorb only plain-SGD updates"
        );
        self.absorbed = kernel.absorbed_updates().to_vec();
        self.scanned = self
            .watch
            .iter()
            .copied()
            .filter(|b| !kernel.checked_buffers().contains(b))
            .collect();
        self.kernel = Some(kernel);
    }

    /// The learnables whose updates the kernel applies in the step
    /// ([`StepKernel::absorbed_updates`]; none with the interpreter).
    pub fn absorbed_updates(&self) -> &[usize] {
        &self.absorbed
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

    /// Whether every buffer and every optimiser moment is followed by its guard of spare
    /// capacity ([`BUFFER_GUARD`]), as they are made and kept.
    pub fn guarded(&self) -> bool {
        let buffers = self.data.iter().chain(&self.optim.m).chain(&self.optim.s);
        buffers.into_iter().all(|b| b.capacity() >= b.len() + BUFFER_GUARD)
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

    /// Whether the following steps compute gradients (on by default; the protocol turns it off
    /// during phases that do not learn). Without them [`Self::optimizer_step`] would step against
    /// the gradients of the last learning step.
    pub fn set_learning(&mut self, learning: bool) {
        self.learning = learning;
    }

    /// Overwrites a buffer (for tests and parameter overrides); lengths must match.
    pub fn set_buffer(&mut self, id: usize, values: &[f64]) {
        self.data[id].copy_from_slice(values);
    }

    /// Advances the network by one step: inputs of this step, every statement, commit. Stops
    /// with an error naming the variable, population, neuron and step at the first NaN or Inf.
    pub fn step(&mut self) -> Result<(), RunError> {
        let n = self.step as usize;
        for k in 0..self.fed.len() {
            let buf = self.fed[k];
            let mut values = std::mem::take(&mut self.data[buf]);
            let filled = self.fill_fed(buf, self.step, self.feed_step, &mut values);
            self.data[buf] = values;
            filled?;
        }
        let time = n as f64 * self.model.protocol.dt;
        self.hand_rates();
        if let Some(kernel) = self.kernel.as_mut() {
            kernel.run(
                &mut self.data,
                &self.consts,
                self.model.protocol.dt,
                time,
                self.learning,
            )?;
            self.step += 1;
            if self.feed.is_some() {
                self.feed_step += 1;
            }
            return self.check_finite();
        }
        let mut m = Machine {
            data: &mut self.data,
            lens: &self.lens,
            consts: &self.consts,
            dt: self.model.protocol.dt,
            time,
            batch: self.batch,
        };
        for (stmt, tape) in self.program.stmts.iter().zip(&self.tapes) {
            if !self.learning && stmt.computes_gradient() {
                continue;
            }
            match tape {
                Some(t) => m.map(t, &mut self.scratch),
                None => interp::tensor(m.data, m.batch, stmt),
            }
        }
        for &(dst, src) in &self.program.commits {
            embedded::commit(&mut self.data, dst, src);
        }
        for &(dst, src) in &self.program.swaps {
            self.data.swap(dst, src);
        }
        self.step += 1;
        if self.feed.is_some() {
            self.feed_step += 1;
        }
        self.check_finite()
    }

    /// Hands the kernel the rates of the updates it absorbs for the next steps (when learning).
    fn hand_rates(&mut self) {
        let Some(kernel) = self
            .kernel
            .as_mut()
            .filter(|_| self.learning && !self.absorbed.is_empty())
        else {
            return;
        };
        self.rates.clear();
        let opt = &self.model.learning.optimizer;
        let rate = |&k: &usize| self.optim.sgd_rate(opt, &self.program.learnables[k]);
        self.rates.extend(self.absorbed.iter().map(rate));
        kernel.set_rates(&self.rates);
    }

    /// Writes what fed buffer `buf` ([`Self::fed`]) holds in step `step`, the `feed_step`-th of
    /// the running data pass, into `out`.
    fn fill_fed(&self, buf: usize, step: u64, feed_step: usize, out: &mut [f64]) -> Result<(), RunError> {
        if let Some(k) = self.program.inputs.iter().position(|&b| b == buf) {
            return match &self.inputs[k] {
                inputs::InputStream::Data { dataset, field, width } => {
                    let name = &self.model.inputs[k].name;
                    self.data_rows(*dataset, *field, *width, false, name, feed_step, out)
                }
                inp => inp.fill(step as usize, &self.consts, self.model.protocol.dt, out),
            };
        }
        let b = &self.program.buffers[buf];
        match b.init {
            BufInit::DataTarget { dataset, field } => {
                self.data_rows(dataset, field, b.len, true, &b.name, feed_step, out)
            }
            BufInit::Noise => {
                rng::fill_standard_normal(self.model.protocol.seed, rng::name_hash(&b.name), step, out);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes the values a dataset field presents to every batch row in the `feed_step`-th step
    /// of the data pass into `out`: the current sample's row (held), its current value
    /// (streamed), or a one-hot label (`one_hot`).
    #[allow(clippy::too_many_arguments)]
    fn data_rows(
        &self,
        dataset: usize,
        field: usize,
        width: usize,
        target: bool,
        what: &str,
        feed_step: usize,
        out: &mut [f64],
    ) -> Result<(), RunError> {
        let ds = &self.datasets[dataset];
        let Some(feed) = self.feed.as_ref().filter(|f| f.dataset == dataset) else {
            return Err(RunError::new(format!(
                "`{what}` reads dataset `{}`, but this phase presents no data from it; add `data {}.train` to the phase",
                ds.decl.name, ds.decl.name
            )));
        };
        if feed_step >= feed.steps() {
            return Err(RunError::new(format!(
                "`{what}`: the pass over dataset `{}` ended after {} steps; start another pass",
                ds.decl.name,
                feed.steps()
            )));
        }
        let split = if feed.test {
            ds.test.as_ref().unwrap_or(&ds.train)
        } else {
            &ds.train
        };
        let f = &split[field];
        let in_sample = feed_step % feed.steps_per_sample;
        if f.labels {
            out.fill(0.0);
        }
        for b in 0..self.batch {
            let sample = feed.sample(feed_step, b);
            let row = &f.data[sample * f.per_row..(sample + 1) * f.per_row];
            let dst = &mut out[b * width..(b + 1) * width];
            if f.labels {
                let label = row[0] as usize;
                if label >= width {
                    return Err(RunError::new(format!(
                        "`{what}`: label {label} of sample {sample} does not fit {width} classes"
                    )));
                }
                dst[label] = 1.0;
            } else if target || ds.decl.present == gle_ir::Presentation::Hold {
                if f.per_row != width {
                    return Err(RunError::new(format!(
                        "`{what}`: samples of `{}` have {} values, but {width} are needed",
                        ds.decl.name, f.per_row
                    )));
                }
                dst.copy_from_slice(row);
            } else {
                let spv = ds.decl.steps_per_sample.unwrap_or(1);
                let k = in_sample / spv;
                dst.copy_from_slice(&row[k * width..(k + 1) * width]);
            }
        }
        Ok(())
    }

    fn check_finite(&self) -> Result<(), RunError> {
        let result = match &self.kernel {
            Some(k) if k.all_finite() => self.check_buffers(&self.scanned),
            _ => self.check_buffers(&self.watch),
        };
        if result.is_err() {
            // A parameter a kernel updates in the step is checked only once something it feeds
            // has blown up (a scan per step would cost what absorbing the update saves): name it
            // if it is the origin.
            for &learnable in &self.absorbed {
                let l = &self.program.learnables[learnable];
                if let Some(k) = self.data[l.param].iter().position(|v| !v.is_finite()) {
                    return Err(RunError::new(format!(
                        "numerical blow-up: parameter `{}` is {} at element {k} (found after step {})",
                        l.name,
                        self.data[l.param][k],
                        self.step - 1
                    )));
                }
            }
        }
        result
    }

    fn check_buffers(&self, buffers: &[usize]) -> Result<(), RunError> {
        for &b in buffers {
            // A branch-free scan first (it vectorises); the position only after a blow-up.
            if self.data[b].iter().fold(true, |ok, v| ok & v.is_finite()) {
                continue;
            }
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
        let threads = self.optimizer_threads();
        let update = self.optim.prepare(
            &self.model.learning.optimizer,
            self.model.protocol.dt,
            &self.consts,
            &self.program,
            &self.absorbed,
            threads,
        );
        let bad = match self.kernel.as_mut().filter(|_| threads > 1) {
            Some(kernel) => kernel.apply_update(&mut self.data, update),
            None => update.apply(&mut self.data, &mut |job| job(0)),
        };
        match bad {
            Some((learnable, k)) => Err(self.optimizer_blow_up(learnable, k)),
            None => Ok(()),
        }
    }

    /// The threads the optimiser shares its work between: the kernel's team, for parameters
    /// large enough to be worth it.
    fn optimizer_threads(&self) -> usize {
        let elements: usize = self.program.learnables.iter().map(|l| self.data[l.param].len()).sum();
        match &self.kernel {
            Some(k) if elements >= PARALLEL_OPTIMIZER_MIN => k.threads(),
            _ => 1,
        }
    }

    /// The error of an optimiser step that left element `k` of a learnable non-finite.
    fn optimizer_blow_up(&self, learnable: usize, k: usize) -> RunError {
        let l = &self.program.learnables[learnable];
        RunError::new(format!(
            "numerical blow-up: parameter `{}` is {} at element {k} after the optimiser step of step {}",
            l.name,
            self.data[l.param][k],
            self.step.saturating_sub(1)
        ))
    }

    /// Runs the model's protocol, calling `observe` after every step (for records) and
    /// `report` after every phase (with its loss and accuracy).
    pub fn run_protocol(
        &mut self,
        observe: &mut dyn FnMut(&Simulation) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        self.run_protocol_reporting(observe, &mut |_| Ok(()))
    }

    /// [`Simulation::run_protocol`] with a callback after every phase.
    pub fn run_protocol_reporting(
        &mut self,
        observe: &mut dyn FnMut(&Simulation) -> Result<(), RunError>,
        report: &mut dyn FnMut(&PhaseReport) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        self.run_protocol_with(&mut Hooks {
            observe,
            observe_every: 1,
            report,
            save: &mut |_, _| Ok(()),
        })
    }

    /// Runs the protocol with every hook: after steps, after each phase, and with the bytes of a
    /// checkpoint every `checkpoint` steps (see [`Simulation::enable_checkpoints`]). With a
    /// kernel, the steps between two that must be observed or checkpointed are taken in one
    /// call where nothing else needs them one by one ([`StepKernel::run_steps`]).
    pub fn run_protocol_with(&mut self, hooks: &mut Hooks) -> Result<(), RunError> {
        let items = self.model.protocol.items.clone();
        let mut cursor = 0u64;
        self.run_items(&items, hooks, true, &mut cursor)?;
        self.resume = None;
        Ok(())
    }

    /// Makes the protocol hand a checkpoint to [`Hooks::save`] every `every` steps.
    pub fn enable_checkpoints(&mut self, every: u64) {
        self.checkpoint_every = Some(every.max(1));
    }

    /// Runs protocol items; returns the loss of the last data phase run (the plateau schedule's
    /// monitored value). `top` marks the top level, whose repeats are epochs.
    fn run_items(
        &mut self,
        items: &[ProtocolItem],
        hooks: &mut Hooks,
        top: bool,
        cursor: &mut u64,
    ) -> Result<Option<f64>, RunError> {
        let mut last_loss = None;
        for item in items {
            if self.limit.is_some_and(|l| self.step >= l) {
                break;
            }
            match item {
                ProtocolItem::Repeat { count, items } => {
                    for _ in 0..*count {
                        let loss = self.run_items(items, hooks, false, cursor)?;
                        if top && let Some(loss) = loss {
                            self.plateau(loss);
                        }
                        last_loss = loss.or(last_loss);
                    }
                }
                ProtocolItem::Phase(phase) => {
                    if let Some(loss) = self.run_phase(phase, hooks, cursor)? {
                        last_loss = Some(loss);
                    }
                }
            }
        }
        Ok(last_loss)
    }

    fn run_phase(
        &mut self,
        phase: &gle_ir::Phase,
        hooks: &mut Hooks,
        cursor: &mut u64,
    ) -> Result<Option<f64>, RunError> {
        let n = self.phase_steps(phase) as u64;
        let start = *cursor;
        *cursor += n;
        // Resuming: phases that ended before the checkpoint were run already; the one it was
        // taken in (possibly at its last step: its report is still due) goes on from there.
        let resuming_inside = match self.resume {
            Some(at) if at > start + n => return Ok(None),
            Some(at) if at > start => true,
            _ => false,
        };
        if !resuming_inside {
            if let Duration::Data { dataset, test } = phase.duration {
                let ds = &self.datasets[dataset];
                let sps = self.steps_per_sample(dataset);
                let epoch = self.epochs[dataset];
                if !test {
                    self.epochs[dataset] += 1;
                }
                let feed = data::Feed::new(ds, dataset, test, self.batch, sps, epoch);
                if feed.steps() == 0 {
                    return Err(RunError::at(
                        format!(
                            "dataset `{}` has fewer samples than the batch size {}",
                            ds.decl.name, self.batch
                        ),
                        phase.span,
                    ));
                }
                self.feed = Some(feed);
            } else {
                self.feed = None;
            }
            self.feed_step = 0;
            self.metrics = metrics::PhaseMetrics::default();
            if let Some(window) = self.adjoint.as_mut() {
                window.clear();
            }
            self.saved_params.clear();
            for (pop, param, v) in &phase.param_overrides {
                let buf = self.program.populations[*pop].params[*param];
                self.saved_params.push((buf, self.data[buf].clone()));
                self.data[buf].iter_mut().for_each(|x| *x = *v);
            }
        }
        self.resume = None;
        self.learning = phase.learn;
        let saved_consts = self.consts.clone();
        for (c, v) in &phase.overrides {
            self.consts[*c] = *v;
        }
        while self.step < start + n {
            if self.limit.is_some_and(|l| self.step >= l) {
                break;
            }
            let chunk = self.chunk_steps(start + n, hooks.observe_every);
            if chunk > 1 {
                // The optimiser steps between the chunk's steps are taken by `run_chunk`.
                self.run_chunk(chunk)?;
                (hooks.observe)(self)?;
                if phase.learn {
                    self.optimizer_step()?;
                }
                self.checkpoint_if_due(&saved_consts, hooks)?;
                continue;
            }
            if let (true, Some(window)) = (phase.learn, self.adjoint.as_mut()) {
                window.before_step(&self.data);
            }
            self.step()?;
            let mut metrics = std::mem::take(&mut self.metrics);
            metrics.observe(self);
            self.metrics = metrics;
            (hooks.observe)(self)?;
            if phase.learn {
                match self.adjoint.as_mut() {
                    None => self.optimizer_step()?,
                    Some(window) => {
                        if window.after_step(&self.data) {
                            window.write_gradients(&mut self.data, self.batch, self.model.protocol.dt);
                            self.optimizer_step()?;
                        }
                    }
                }
            }
            self.checkpoint_if_due(&saved_consts, hooks)?;
        }
        for (buf, values) in std::mem::take(&mut self.saved_params).into_iter().rev() {
            refill(&mut self.data[buf], values);
        }
        self.consts = saved_consts;
        self.feed = None;
        self.learning = true;
        let metrics = std::mem::take(&mut self.metrics);
        // Counted from the phase's start, so a phase resumed from a checkpoint reports the
        // steps its loss and accuracy cover (the metric accumulators are checkpointed).
        let r = PhaseReport {
            name: phase.name.clone(),
            steps: (self.step - start) as usize,
            end_step: self.step,
            loss: metrics.loss(),
            accuracy: metrics.accuracy(),
            nudged: phase.learn && !self.program.costs.is_empty(),
            lr_scale: self.optim.lr_scale,
        };
        (hooks.report)(&r)?;
        Ok(if matches!(phase.duration, Duration::Data { .. }) {
            r.loss
        } else {
            None
        })
    }

    /// Hands [`Hooks::save`] a checkpoint if one is due after this step; `base_consts` are the
    /// phase's constants before its overrides (a resume re-applies them).
    fn checkpoint_if_due(&mut self, base_consts: &[f64], hooks: &mut Hooks) -> Result<(), RunError> {
        if let Some(every) = self.checkpoint_every
            && self.step.is_multiple_of(every)
        {
            let overridden = std::mem::replace(&mut self.consts, base_consts.to_vec());
            let bytes = self.checkpoint();
            self.consts = overridden;
            (hooks.save)(self.step, bytes)?;
        }
        Ok(())
    }

    /// Steps a phase lasts.
    fn phase_steps(&self, phase: &gle_ir::Phase) -> usize {
        match phase.duration {
            Duration::Steps(n) => n,
            Duration::Data { dataset, test } => {
                (self.datasets[dataset].rows(test) / self.batch) * self.steps_per_sample(dataset)
            }
        }
    }

    /// The buffer holding variable `var` of population `p`.
    fn pop_var_buffer(&self, p: usize, var: gle_ir::NeuronVar) -> usize {
        let pb = &self.program.populations[p];
        let nt = &self.model.neurons[self.model.populations[p].neuron];
        match var {
            gle_ir::NeuronVar::State(_) => pb.u,
            gle_ir::NeuronVar::Param(i) => pb.params[i],
            gle_ir::NeuronVar::Def(d) if d == nt.rate => pb.r,
            gle_ir::NeuronVar::Def(d) if Some(d) == nt.mismatch => pb.e.unwrap_or(pb.udot),
            _ => pb.uhat,
        }
    }

    /// Reduce-on-plateau after an epoch whose monitored loss was `loss`.
    fn plateau(&mut self, loss: f64) {
        let Some((patience, factor)) = self.model.learning.plateau else {
            return;
        };
        match self.best_loss {
            Some(best) if loss >= best * (1.0 - 1e-4) => {
                self.bad_epochs += 1;
                if self.bad_epochs > patience {
                    self.optim.lr_scale *= factor;
                    self.bad_epochs = 0;
                }
            }
            _ => {
                self.best_loss = Some(loss);
                self.bad_epochs = 0;
            }
        }
    }

    /// Steps one sample of dataset `d` lasts, from the width of the input that reads it.
    fn steps_per_sample(&self, d: usize) -> usize {
        for (k, inp) in self.model.inputs.iter().enumerate() {
            if let inputs::InputStream::Data { dataset, field, .. } = self.inputs[k]
                && dataset == d
            {
                return self.datasets[d].steps_per_sample(field, inp.size);
            }
        }
        self.datasets[d].decl.steps_per_sample.unwrap_or(1)
    }

    /// The current sample of batch row `b` during a data phase: `(dataset, test split, sample,
    /// step within the sample, steps per sample)`.
    pub fn current_sample(&self, b: usize) -> Option<(usize, bool, usize, usize, usize)> {
        self.sample_after(self.feed_step, b)
    }

    /// [`Self::current_sample`] after the first `feed_steps` steps of the data pass.
    fn sample_after(&self, feed_steps: usize, b: usize) -> Option<(usize, bool, usize, usize, usize)> {
        let f = self.feed.as_ref()?;
        let n = feed_steps.checked_sub(1)?;
        Some((
            f.dataset,
            f.test,
            f.sample(n, b),
            n % f.steps_per_sample,
            f.steps_per_sample,
        ))
    }

    /// Starts a pass over a dataset split outside the protocol (for embedding and benchmarks):
    /// the following steps present its samples, batch by batch.
    pub fn begin_data_pass(&mut self, dataset: usize, test: bool) {
        let sps = self.steps_per_sample(dataset);
        let epoch = self.epochs[dataset];
        self.feed = Some(data::Feed::new(
            &self.datasets[dataset],
            dataset,
            test,
            self.batch,
            sps,
            epoch,
        ));
        self.feed_step = 0;
    }

    /// Steps left in the current data pass (0 outside one).
    pub fn data_steps_left(&self) -> usize {
        self.feed
            .as_ref()
            .map_or(0, |f| f.steps().saturating_sub(self.feed_step))
    }

    /// A loaded dataset.
    pub fn dataset(&self, d: usize) -> &data::LoadedDataset {
        &self.datasets[d]
    }

    /// Number of batch rows.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Steps of the protocol's step phases (`steps`, `duration`): what precomputed input
    /// streams must cover. Data phases take their length from the dataset.
    pub fn protocol_steps(model: &Model) -> Result<usize, RunError> {
        fn count(items: &[ProtocolItem]) -> usize {
            items
                .iter()
                .map(|item| match item {
                    ProtocolItem::Phase(p) => match p.duration {
                        Duration::Steps(s) => s,
                        Duration::Data { .. } => 0,
                    },
                    ProtocolItem::Repeat { count: c, items } => c.saturating_mul(count(items)),
                })
                .fold(0usize, usize::saturating_add)
        }
        Ok(count(&model.protocol.items))
    }

    /// Steps of the whole protocol, data phases included.
    pub fn total_steps(&self) -> usize {
        fn count(sim: &Simulation, items: &[ProtocolItem]) -> usize {
            items
                .iter()
                .map(|item| match item {
                    ProtocolItem::Phase(p) => match p.duration {
                        Duration::Steps(s) => s,
                        Duration::Data { dataset, test } => {
                            (sim.datasets[dataset].rows(test) / sim.batch) * sim.steps_per_sample(dataset)
                        }
                    },
                    ProtocolItem::Repeat { count: c, items } => c.saturating_mul(count(sim, items)),
                })
                .fold(0usize, usize::saturating_add)
        }
        count(self, &self.model.protocol.items)
    }

    /// The values of a recorded quantity now: all batch rows of a population variable or
    /// input, or a projection's weights.
    pub fn recorded(&self, r: Recorded) -> Vec<f64> {
        match r {
            Recorded::PopVar(p, var) => self.data[self.pop_var_buffer(p, var)].clone(),
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

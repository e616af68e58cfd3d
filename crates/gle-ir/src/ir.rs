//! The typed model IR: what a `.gle` file means after names, shapes, kinds and ranges are checked.
//!
//! Populations are vectors and projections matrices: nothing here is ever expanded per neuron.
//! Indices (`usize`) refer into the vectors of [`Model`] or of the owning [`NeuronType`].

use gle_syntax::Span;
pub use gle_syntax::ast::BinOp;

/// A checked model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The name from `model name` (or the file stem when absent).
    pub name: String,
    /// Named constants, already evaluated; `--set` overrides replace these values.
    pub consts: Vec<Const>,
    /// User-defined scalar functions.
    pub functions: Vec<Function>,
    /// Neuron types.
    pub neurons: Vec<NeuronType>,
    /// Input streams.
    pub inputs: Vec<Input>,
    /// Data files and how they are presented.
    pub datasets: Vec<Dataset>,
    /// Populations: vectors of neurons of one type.
    pub populations: Vec<Population>,
    /// Projections: one matrix (or structured map) each.
    pub projections: Vec<Projection>,
    /// The energy, if the model learns by gradient.
    pub energy: Option<Energy>,
    /// Explicit plasticity rules.
    pub rules: Vec<PlasticityRule>,
    /// Learning settings.
    pub learning: Learning,
    /// The run protocol.
    pub protocol: Protocol,
}

/// `const name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Name.
    pub name: String,
    /// Evaluated value.
    pub value: f64,
    /// Declaration span.
    pub span: Span,
}

/// `fn name(params) = body`.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// Name.
    pub name: String,
    /// Parameter names; the body refers to them as [`Ref::Arg`].
    pub params: Vec<String>,
    /// Body.
    pub body: Expr,
    /// Declaration span.
    pub span: Span,
}

/// A neuron type.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuronType {
    /// Name.
    pub name: String,
    /// Per-neuron parameters.
    pub params: Vec<ParamDecl>,
    /// Dynamic state variables.
    pub states: Vec<Named>,
    /// Dendritic compartments.
    pub compartments: Vec<Compartment>,
    /// Named definitions (`let`, `rate`, `mismatch`) in source order.
    pub defs: Vec<Def>,
    /// Index into `defs` of the output rate.
    pub rate: usize,
    /// Index into `defs` of the neuron-local mismatch (absent for conductance-based neurons).
    pub mismatch: Option<usize>,
    /// Leak conductance of a compartmental neuron (`leak g_l`).
    pub leak: Option<Expr>,
    /// Every time constant used by a `D[τ]`/`I[τ]` operator, with its span.
    pub time_constants: Vec<(Expr, Span)>,
    /// Declaration span.
    pub span: Span,
}

/// A name with a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Named {
    /// Name.
    pub name: String,
    /// Where it was declared.
    pub span: Span,
}

/// `param name = default`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    /// Name.
    pub name: String,
    /// Default value, if any (a constant expression).
    pub default: Option<f64>,
    /// Whether some `D[τ]`/`I[τ]` uses this parameter directly as its τ.
    pub time_constant: bool,
    /// Declaration span.
    pub span: Span,
}

/// `compartment name { conductance g }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Compartment {
    /// Name.
    pub name: String,
    /// Coupling conductance to the soma.
    pub conductance: Option<Expr>,
    /// Declaration span.
    pub span: Span,
}

/// What a named definition in a neuron is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefKind {
    /// `let`
    Let,
    /// `rate`
    Rate,
    /// `mismatch`
    Mismatch,
}

/// A named definition inside a neuron type.
#[derive(Clone, Debug, PartialEq)]
pub struct Def {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: DefKind,
    /// Definition, over the neuron's own variables.
    pub value: Expr,
    /// Declaration span.
    pub span: Span,
}

/// A variable of a neuron type, as seen from outside (`pop.var`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeuronVar {
    /// A parameter.
    Param(usize),
    /// A state variable.
    State(usize),
    /// A `let`/`rate`/`mismatch` definition.
    Def(usize),
    /// A compartment's potential.
    Compartment(usize),
}

/// An input stream `input name[size] = source`.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// Name.
    pub name: String,
    /// Width.
    pub size: usize,
    /// The source: a function of time `t` (possibly with random draws), a built-in generator
    /// (`square`, `smooth`, `ou`), or a dataset field.
    pub source: Expr,
    /// Declaration span.
    pub span: Span,
}

/// How a dataset's rows are turned into a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presentation {
    /// Each row is a time series: one value per step (times `steps_per_value`).
    Stream,
    /// Each row is held constant for `steps_per_sample` steps.
    Hold,
}

/// `dataset name { … }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Name.
    pub name: String,
    /// Path of the `.npz`, `.npy` or `.csv` file, relative to the model file.
    pub file: String,
    /// Fields (`x`, `y`).
    pub fields: Vec<DataField>,
    /// Presentation mode.
    pub present: Presentation,
    /// Steps each row is held (hold) or each value lasts (stream).
    pub steps_per_sample: Option<usize>,
    /// Seed of the per-epoch shuffle; `None` keeps file order.
    pub shuffle_seed: Option<u64>,
    /// Declaration span.
    pub span: Span,
}

/// A field of a dataset: where its train and test arrays are.
#[derive(Clone, Debug, PartialEq)]
pub struct DataField {
    /// Name.
    pub name: String,
    /// Where the values come from.
    pub source: DataSource,
    /// Span of the field.
    pub span: Span,
}

/// Where a dataset field's values are stored.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// Named arrays in an `.npz` archive: train key, optional test key.
    Array {
        /// Key of the training array.
        train: String,
        /// Key of the test array.
        test: Option<String>,
    },
    /// Columns `start..end` of a CSV file.
    Columns {
        /// First column.
        start: usize,
        /// One past the last column.
        end: usize,
    },
}

/// Whether a population receives errors and learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// In a `mismatch(…)` term of the energy: gets errors.
    Learner,
    /// In no energy term: a pure filter of its input (a teacher, a fixed front end).
    Fixed,
}

/// A population: `size` neurons of one type with per-neuron parameter values.
#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    /// Name.
    pub name: String,
    /// Number of neurons.
    pub size: usize,
    /// Index of the neuron type.
    pub neuron: usize,
    /// One entry per parameter of the neuron type, in its order.
    pub params: Vec<ParamValue>,
    /// Learner or fixed.
    pub role: Role,
    /// Declaration span.
    pub span: Span,
}

/// The per-neuron values of one parameter in one population: consecutive segments.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamValue {
    /// `(count, init)` segments; the counts add up to the population size.
    pub segments: Vec<(usize, Init)>,
    /// Whether the parameter is learned.
    pub learn: bool,
    /// Learning-rate factor of a learned parameter (`learn(lr: factor)`; 1 otherwise).
    pub lr_factor: f64,
    /// Where the value was written (the neuron type's default when not set).
    pub span: Span,
}

/// How values are initialised.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// One value for every element.
    Const(f64),
    /// One value per element (a vector, or a matrix in row-major order).
    Values(Vec<f64>),
    /// Seeded random draws.
    Random(Distribution),
    /// Loaded from an `.npy` file.
    File(String),
}

/// A probability distribution for seeded initialisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// `uniform(lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// `normal(mean, std)`.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// `fan_in_uniform`: U(±1/√fan_in), the standard dense-layer default.
    FanInUniform,
}

/// What a projection's presynaptic side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An input stream.
    Input(usize),
    /// A population variable (the rate by default).
    Population(usize, NeuronVar),
}

/// The connectivity of a projection.
#[derive(Clone, Debug, PartialEq)]
pub enum Connectivity {
    /// A dense matrix `W` (post × pre), an optional bias vector, and an optional elementwise
    /// function applied to the result: the connectivity function `f(r) = map(W·r + b)`.
    Dense {
        /// Weight initialisation.
        init: Init,
        /// Bias initialisation, if the projection has a bias.
        bias: Option<Init>,
        /// The elementwise function applied to `W·r + b` (a built-in or a user function).
        map: Option<Callee>,
        /// Synaptic low-pass: the projection sees `r_syn` with `τ_s·ṙ_syn = r − r_syn` instead
        /// of the presynaptic value `r` (`None`: no filter).
        synapse: Option<f64>,
    },
    /// A diagonal matrix (pre and post of equal size).
    Diagonal {
        /// Diagonal initialisation.
        init: Init,
    },
    /// The identity map (pre and post of equal size), no parameters.
    Identity,
}

/// Fixed or learnable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Plasticity {
    /// Never changes.
    Fixed,
    /// Learned, with a learning-rate factor relative to the optimiser's rate.
    Learn {
        /// Multiplier of the optimiser's learning rate.
        lr_factor: f64,
    },
}

/// What carries errors back through a projection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Feedback {
    /// The exact transpose `Wᵀ` (weight transport).
    Transpose,
    /// A fixed random matrix of the same shape (feedback alignment).
    Random(Distribution),
}

/// `connect pre -> post : connectivity modifiers`.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// Name (explicit, or `pre_post`).
    pub name: String,
    /// Presynaptic side.
    pub pre: Source,
    /// Postsynaptic population.
    pub post: usize,
    /// Target compartment of the postsynaptic neuron; `None` is the soma's synaptic input.
    pub compartment: Option<usize>,
    /// Connectivity and its parameters.
    pub connectivity: Connectivity,
    /// Shape `(post size, pre size)` of the (possibly implicit) matrix.
    pub shape: (usize, usize),
    /// Fixed or learned.
    pub plasticity: Plasticity,
    /// Error feedback path.
    pub feedback: Feedback,
    /// Declaration span.
    pub span: Span,
}

/// `energy name = expr`.
#[derive(Clone, Debug, PartialEq)]
pub struct Energy {
    /// Name.
    pub name: String,
    /// The scalar energy over population vectors.
    pub value: Expr,
    /// Declaration span.
    pub span: Span,
}

/// `rule projection { dW = …; db = …; clip lo, hi; lr η }`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlasticityRule {
    /// Index of the projection.
    pub projection: usize,
    /// Weight update `dW/dt` per synapse (an outer product over pre and post quantities).
    pub weight: Option<Expr>,
    /// Bias update per post neuron.
    pub bias: Option<Expr>,
    /// Clip range applied after each update.
    pub clip: Option<(f64, f64)>,
    /// Learning rate η.
    pub lr: f64,
    /// The constant `lr` names, when it is written as one (`lr eta`): a phase that overrides
    /// that constant changes the rule's rate for the phase.
    pub lr_const: Option<usize>,
    /// Declaration span.
    pub span: Span,
}

/// How errors are computed from the instantaneous error g.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrorMode {
    /// GLE error neurons: `τʳ v̇ = −v + g`, `e = v + τᵐ v̇`.
    Prospective,
    /// `e = g`.
    Instantaneous,
    /// The exact adjoint computed offline over windows of `window` steps.
    Adjoint {
        /// Window length in steps.
        window: usize,
    },
}

/// The optimiser applied every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `θ ← θ − lr·Γ`.
    Sgd {
        /// Per-step learning rate.
        lr: f64,
    },
    /// `m ← μ m + Γ; θ ← θ − lr·m`.
    Momentum {
        /// Per-step learning rate.
        lr: f64,
        /// Momentum μ.
        mu: f64,
    },
    /// Adam with bias correction.
    Adam {
        /// Per-step learning rate.
        lr: f64,
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// ϵ.
        eps: f64,
    },
}

/// Learning settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Learning {
    /// Error mode.
    pub errors: ErrorMode,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Reduce-on-plateau `(patience, factor)`, applied per epoch.
    pub plateau: Option<(usize, f64)>,
    /// Lower clamps `(parameter name, minimum)` applied after every optimiser step.
    pub clamps: Vec<(String, f64)>,
}

/// Layer update order within one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every population reads values committed at the previous step (the reference schedule).
    Parallel,
    /// Populations update in dependency order within a step (no forward delay).
    Sequential,
}

/// Time integrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrator {
    /// Forward Euler (the reference semantics).
    Euler,
    /// Exponential Euler.
    Exponential,
}

/// How long a phase lasts.
#[derive(Clone, Debug, PartialEq)]
pub enum Duration {
    /// A number of steps.
    Steps(usize),
    /// One pass over a dataset split.
    Data {
        /// Dataset index.
        dataset: usize,
        /// `true` for the test split.
        test: bool,
    },
}

/// One block of a run protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum ProtocolItem {
    /// A phase.
    Phase(Phase),
    /// `repeat n { … }`.
    Repeat {
        /// Repetitions.
        count: usize,
        /// Repeated items.
        items: Vec<ProtocolItem>,
    },
}

/// `phase name { … }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// Name.
    pub name: String,
    /// Length.
    pub duration: Duration,
    /// Whether parameters are updated.
    pub learn: bool,
    /// Constants overridden during this phase (e.g. `beta 0`).
    pub overrides: Vec<(usize, f64)>,
    /// Population parameters `(population, parameter, value)` replaced during this phase and
    /// restored to their previous values after it (`override h.tau_m, 1`).
    pub param_overrides: Vec<(usize, usize, f64)>,
    /// Span.
    pub span: Span,
}

/// `record a, b every n`.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Recorded quantities.
    pub targets: Vec<Recorded>,
    /// Interval in steps.
    pub every: usize,
    /// Span.
    pub span: Span,
}

/// A recordable quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A population variable.
    PopVar(usize, NeuronVar),
    /// An input stream.
    Input(usize),
    /// A projection's weights.
    Weights(usize),
    /// All learnable weights.
    AllWeights,
}

/// How the network's answer for one sample is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readout {
    /// Argmax over classes of the output summed over the sample's steps.
    ArgmaxOfSum(usize, NeuronVar),
    /// Argmax of the output after the sample's last step.
    ArgmaxOfLast(usize, NeuronVar),
}

/// The run protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct Protocol {
    /// Time step.
    pub dt: f64,
    /// Independent streams sharing the parameters.
    pub batch: usize,
    /// Seed of all random draws.
    pub seed: u64,
    /// Layer schedule.
    pub schedule: Schedule,
    /// Integrator.
    pub integrator: Integrator,
    /// Phases in order.
    pub items: Vec<ProtocolItem>,
    /// Recorders.
    pub records: Vec<Record>,
    /// Checkpoint interval in steps.
    pub checkpoint_every: Option<usize>,
    /// Classification read-out.
    pub readout: Option<Readout>,
    /// Metrics to report (`loss`, `accuracy`).
    pub metrics: Vec<String>,
}

/// A resolved expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number.
    Num(f64),
    /// A string (file names, dataset keys).
    Str(String),
    /// A reference to a named thing.
    Ref(Ref),
    /// `[a, b, …]`.
    List(Vec<Expr>),
    /// `-x`.
    Neg(Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// A call of a built-in or user function.
    Call(Callee, Vec<Expr>),
    /// `D[τ] x`.
    D(Box<Expr>, Box<Expr>),
    /// `I[τ] x`.
    I(Box<Expr>, Box<Expr>),
}

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ref {
    /// A model constant.
    Const(usize),
    /// A parameter of the enclosing user function.
    Arg(usize),
    /// The simulation time `t`.
    Time,
    /// The time step `dt`.
    Dt,
    /// A variable of the enclosing neuron type.
    Own(NeuronVar),
    /// The summed synaptic input to the enclosing neuron's soma.
    SynapticInput,
    /// An input stream.
    Input(usize),
    /// A whole population (argument of `mismatch(…)`).
    Population(usize),
    /// A variable of a population.
    PopVar(usize, NeuronVar),
    /// A dataset field.
    DataField(usize, usize),
    /// Inside a rule: a presynaptic variable (`pre.r`), or the presynaptic input value.
    Pre(Option<NeuronVar>),
    /// Inside a rule: a postsynaptic variable (`post.basal`).
    Post(NeuronVar),
    /// Inside a rule: the projection's own weight.
    Weight,
}

/// The function called by [`Expr::Call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callee {
    /// A built-in.
    Builtin(crate::builtins::Builtin),
    /// A user function (index into [`Model::functions`]).
    User(usize),
}

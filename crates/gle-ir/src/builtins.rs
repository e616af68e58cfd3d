//! Built-in functions of the `.gle` language and where each may be used.

/// A built-in function that stays in resolved expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// Identity activation.
    Linear,
    /// `tanh x`.
    Tanh,
    /// `1/(1+e^{−x})`.
    Sigmoid,
    /// `clamp(x, 0, 1)`.
    HardSigmoid,
    /// `max(x, 0)`.
    Relu,
    /// `ln(1+eˣ)`.
    Softplus,
    /// `clamp(x, −1, 1)`.
    HardTanh,
    /// `eˣ`.
    Exp,
    /// Natural logarithm.
    Log,
    /// `ln(1+x)`.
    Log1p,
    /// Square root.
    Sqrt,
    /// Absolute value.
    Abs,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Smaller of two values.
    Min,
    /// Larger of two values.
    Max,
    /// `clamp(x, lo, hi)`.
    Clamp,
    /// Heaviside step: 1 for x ≥ 0, else 0.
    Step,
    /// Sawtooth of period 1 in [−1, 1): `2·frac(x) − 1`.
    Sawtooth,
    /// Square wave of period 1: +1 on `[0, ½)`, −1 on `[½, 1)`.
    Square,
    /// Sum over the elements of a vector.
    Sum,
    /// `½‖prediction − target‖²` (the target carries no gradient).
    Mse,
    /// Softmax cross-entropy of logits against class labels (no gradient to the labels).
    CrossEntropy,
    /// `½Σ e²` over the mismatches of the listed populations.
    Mismatch,
    /// Gaussian smoothing of a signal over time (`sigma_steps`).
    Smooth,
    /// Ornstein–Uhlenbeck noise (`tau`, `sigma`).
    Ou,
    /// A seeded uniform draw.
    Uniform,
    /// A seeded normal draw.
    Normal,
    /// A recorded stream from an `.npy` file: one row per step.
    Npy,
    /// Rate noise `std·ξ`: a fresh standard normal ξ per neuron, batch row and step.
    Noise,
    /// A first-order low-pass of a target in the energy: `τ·ẏ = x − y` (τ = 0: no filter).
    Lowpass,
}

/// Where an expression is written; decides which built-ins are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// A constant, parameter default or setting: evaluated once at check time.
    Const,
    /// A user function body.
    Function,
    /// A neuron type's definitions.
    Neuron,
    /// An input source: a function of time.
    Input,
    /// The energy.
    Energy,
    /// An explicit plasticity rule.
    Rule,
    /// A neuron type's `rate` definition (a neuron definition that may add noise).
    Rate,
}

/// Name, parameter names and description of a built-in.
pub struct Signature {
    /// The built-in.
    pub builtin: Builtin,
    /// Its name in `.gle` source.
    pub name: &'static str,
    /// Parameter names (for named arguments); empty with `variadic` for `mismatch`.
    pub params: &'static [&'static str],
    /// Whether any number (≥ 1) of arguments is accepted.
    pub variadic: bool,
}

const fn sig(builtin: Builtin, name: &'static str, params: &'static [&'static str]) -> Signature {
    Signature {
        builtin,
        name,
        params,
        variadic: false,
    }
}

/// Every built-in that can appear in a resolved expression.
pub const BUILTINS: &[Signature] = &[
    sig(Builtin::Linear, "linear", &["x"]),
    sig(Builtin::Tanh, "tanh", &["x"]),
    sig(Builtin::Sigmoid, "sigmoid", &["x"]),
    sig(Builtin::HardSigmoid, "hard_sigmoid", &["x"]),
    sig(Builtin::Relu, "relu", &["x"]),
    sig(Builtin::Softplus, "softplus", &["x"]),
    sig(Builtin::HardTanh, "hard_tanh", &["x"]),
    sig(Builtin::Exp, "exp", &["x"]),
    sig(Builtin::Log, "log", &["x"]),
    sig(Builtin::Log1p, "log1p", &["x"]),
    sig(Builtin::Sqrt, "sqrt", &["x"]),
    sig(Builtin::Abs, "abs", &["x"]),
    sig(Builtin::Sin, "sin", &["x"]),
    sig(Builtin::Cos, "cos", &["x"]),
    sig(Builtin::Min, "min", &["a", "b"]),
    sig(Builtin::Max, "max", &["a", "b"]),
    sig(Builtin::Clamp, "clamp", &["x", "lo", "hi"]),
    sig(Builtin::Step, "step", &["x"]),
    sig(Builtin::Sawtooth, "sawtooth", &["x"]),
    sig(Builtin::Square, "square", &["x"]),
    sig(Builtin::Sum, "sum", &["x"]),
    sig(Builtin::Mse, "mse", &["prediction", "target"]),
    sig(Builtin::CrossEntropy, "cross_entropy", &["logits", "labels"]),
    Signature {
        builtin: Builtin::Mismatch,
        name: "mismatch",
        params: &[],
        variadic: true,
    },
    sig(Builtin::Smooth, "smooth", &["signal", "sigma_steps"]),
    sig(Builtin::Ou, "ou", &["tau", "sigma"]),
    sig(Builtin::Uniform, "uniform", &["lo", "hi"]),
    sig(Builtin::Normal, "normal", &["mean", "std"]),
    sig(Builtin::Npy, "npy", &["file"]),
    sig(Builtin::Noise, "noise", &["std"]),
    sig(Builtin::Lowpass, "lowpass", &["signal", "tau"]),
];

impl Builtin {
    /// The built-in's signature.
    pub fn signature(self) -> &'static Signature {
        BUILTINS
            .iter()
            .find(|s| s.builtin == self)
            .expect("every builtin has a signature")
    }

    /// Its name in source.
    pub fn name(self) -> &'static str {
        self.signature().name
    }

    /// Looks a built-in up by name.
    pub fn from_name(name: &str) -> Option<Builtin> {
        BUILTINS.iter().find(|s| s.name == name).map(|s| s.builtin)
    }

    /// Whether it is a scalar function applied elementwise (allowed everywhere).
    pub fn is_elementwise(self) -> bool {
        !matches!(
            self,
            Builtin::Sum
                | Builtin::Mse
                | Builtin::CrossEntropy
                | Builtin::Mismatch
                | Builtin::Smooth
                | Builtin::Ou
                | Builtin::Uniform
                | Builtin::Normal
                | Builtin::Npy
                | Builtin::Noise
                | Builtin::Lowpass
        )
    }

    /// Whether the built-in may be used in `ctx`.
    pub fn allowed_in(self, ctx: Context) -> bool {
        if self.is_elementwise() {
            return true;
        }
        match self {
            Builtin::Sum | Builtin::Mse | Builtin::CrossEntropy | Builtin::Mismatch => ctx == Context::Energy,
            Builtin::Smooth | Builtin::Ou | Builtin::Uniform | Builtin::Normal | Builtin::Npy => ctx == Context::Input,
            Builtin::Noise => ctx == Context::Rate,
            Builtin::Lowpass => ctx == Context::Energy,
            _ => false,
        }
    }

    /// Where it may be used, for error messages.
    pub fn allowed_where(self) -> &'static str {
        match self {
            Builtin::Sum | Builtin::Mse | Builtin::CrossEntropy | Builtin::Mismatch | Builtin::Lowpass => {
                "in the energy"
            }
            Builtin::Noise => "in a neuron type's `rate`",
            Builtin::Smooth | Builtin::Ou | Builtin::Uniform | Builtin::Normal | Builtin::Npy => "in an input source",
            _ => "anywhere",
        }
    }
}

/// Names that are built-in values rather than functions.
pub const BUILTIN_VALUES: &[&str] = &["pi", "t", "dt"];

/// Every reserved name (built-in functions and values, and words with special meaning in
/// initialisers and settings), which user declarations may not reuse.
pub fn is_reserved(name: &str) -> bool {
    Builtin::from_name(name).is_some()
        || BUILTIN_VALUES.contains(&name)
        || matches!(
            name,
            "dense" | "diagonal" | "identity" | "fan_in_uniform" | "file" | "linspace" | "round" | "input"
        )
}

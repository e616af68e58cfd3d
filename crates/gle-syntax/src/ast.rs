//! The abstract syntax tree of a `.gle` file. Every node carries the byte span it was parsed from.

use crate::span::{Span, Spanned};

/// An identifier with its span.
pub type Ident = Spanned<String>;

/// A whole parsed file: its declarations in source order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    /// Top-level declarations, in source order.
    pub decls: Vec<Decl>,
}

/// One top-level declaration.
#[derive(Clone, Debug, PartialEq)]
pub enum Decl {
    /// `model name`
    Model(Ident),
    /// `const name = expr`: a named number, overridable from the command line.
    Const(ConstDecl),
    /// `fn name(x, …) = expr`: a user-defined scalar function.
    Fn(FnDecl),
    /// `neuron Name { … }`: a neuron type.
    Neuron(NeuronDecl),
    /// `input name[n] = source`: an input stream.
    Input(InputDecl),
    /// `dataset name { … }`: a data file and how it is presented.
    Dataset(DatasetDecl),
    /// `population name[n] : Type(…) { … }`.
    Population(PopulationDecl),
    /// `connect [name =] pre -> post[.compartment] : kind modifiers`.
    Connect(ConnectDecl),
    /// `energy [name] = expr`.
    Energy(EnergyDecl),
    /// `rule projection { dW = … settings }`: an explicit plasticity rule.
    Rule(RuleDecl),
    /// `learn { settings }`: learning settings.
    Learn(Block),
    /// `run { settings, phases, records }`: the run protocol.
    Run(RunDecl),
}

impl Decl {
    /// The span of the whole declaration's keyword (for "declared here" labels).
    pub fn span(&self) -> Span {
        match self {
            Decl::Model(i) => i.span,
            Decl::Const(d) => d.span,
            Decl::Fn(d) => d.span,
            Decl::Neuron(d) => d.span,
            Decl::Input(d) => d.span,
            Decl::Dataset(d) => d.span,
            Decl::Population(d) => d.span,
            Decl::Connect(d) => d.span,
            Decl::Energy(d) => d.span,
            Decl::Rule(d) => d.span,
            Decl::Learn(d) => d.span,
            Decl::Run(d) => d.span,
        }
    }
}

/// `const name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstDecl {
    /// The constant's name.
    pub name: Ident,
    /// Its value.
    pub value: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// `fn name(params) = body`.
#[derive(Clone, Debug, PartialEq)]
pub struct FnDecl {
    /// The function's name.
    pub name: Ident,
    /// Parameter names.
    pub params: Vec<Ident>,
    /// The body, an expression over the parameters.
    pub body: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// `neuron Name { items }`.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuronDecl {
    /// The type's name.
    pub name: Ident,
    /// Its items in source order.
    pub items: Vec<NeuronItem>,
    /// The whole declaration.
    pub span: Span,
}

/// One item inside a neuron type.
#[derive(Clone, Debug, PartialEq)]
pub enum NeuronItem {
    /// `param name [= default]`: a per-neuron parameter.
    Param {
        /// Parameter name.
        name: Ident,
        /// Default value.
        default: Option<Expr>,
    },
    /// `state name`: a dynamic variable integrated in time.
    State(Ident),
    /// `let name = expr`: a named derived quantity.
    Let {
        /// Name.
        name: Ident,
        /// Definition.
        value: Expr,
    },
    /// `rate name = expr`: the neuron's output rate.
    Rate {
        /// Name.
        name: Ident,
        /// Definition.
        value: Expr,
    },
    /// `mismatch name = expr`: the neuron-local mismatch from which the membrane equation follows.
    Mismatch {
        /// Name.
        name: Ident,
        /// Definition.
        value: Expr,
    },
    /// `compartment name { settings }`: a dendritic compartment.
    Compartment {
        /// Name.
        name: Ident,
        /// Its settings (`conductance g_b`, …).
        settings: Vec<Setting>,
    },
    /// `key value, …`: a neuron-level setting such as `leak g_l`.
    Setting(Setting),
}

/// `input name[size] = source`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    /// The input's name.
    pub name: Ident,
    /// Its width.
    pub size: Expr,
    /// The source expression (`square(…)`, `data(mnist.x)`, …).
    pub source: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// `dataset name { field x = …  settings }`.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetDecl {
    /// The dataset's name.
    pub name: Ident,
    /// `field name = expr` items.
    pub fields: Vec<(Ident, Expr)>,
    /// Other settings (`file "…"`, `present stream`, …).
    pub settings: Vec<Setting>,
    /// The whole declaration.
    pub span: Span,
}

/// `population name[size] : Type(values) { values and groups }`.
#[derive(Clone, Debug, PartialEq)]
pub struct PopulationDecl {
    /// The population's name.
    pub name: Ident,
    /// Number of neurons.
    pub size: Expr,
    /// The neuron type.
    pub neuron: Ident,
    /// Parameter values for the whole population (inline and in the body).
    pub values: Vec<PopValue>,
    /// `group n { … }` blocks assigning values to consecutive runs of neurons.
    pub groups: Vec<Group>,
    /// The whole declaration.
    pub span: Span,
}

/// `name: expr [learn[(lr: factor)]]` inside a population.
#[derive(Clone, Debug, PartialEq)]
pub struct PopValue {
    /// The parameter being set.
    pub name: Ident,
    /// Its value: a number, a list, or a random draw.
    pub value: Expr,
    /// The span of a `learn` mark, if present.
    pub learn: Option<Span>,
    /// The arguments of `learn(lr: factor)` (empty for a bare `learn`).
    pub learn_args: Vec<Arg>,
}

/// `group n { values }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Number of neurons in the group.
    pub count: Expr,
    /// Values for those neurons.
    pub values: Vec<PopValue>,
    /// The whole group.
    pub span: Span,
}

/// One end of a projection: `pop` or `pop.var` (source) / `pop.compartment` (target).
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// The population or input.
    pub node: Ident,
    /// The variable read (source side) or compartment targeted (target side).
    pub member: Option<Ident>,
    /// The whole endpoint.
    pub span: Span,
}

/// `connect [name =] pre -> post : kind modifiers`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectDecl {
    /// An explicit name, if given.
    pub name: Option<Ident>,
    /// Presynaptic side.
    pub pre: Endpoint,
    /// Postsynaptic side.
    pub post: Endpoint,
    /// The connectivity: `dense(…)`, `identity`, `diagonal(…)`, `one_to_one`.
    pub kind: Expr,
    /// `fixed`, `learn(…)`, `feedback …`.
    pub modifiers: Vec<Modifier>,
    /// The whole declaration.
    pub span: Span,
}

/// A projection modifier.
#[derive(Clone, Debug, PartialEq)]
pub enum Modifier {
    /// `fixed`
    Fixed(Span),
    /// `learn` or `learn(lr: factor)`.
    Learn {
        /// Arguments such as `lr: 0.2`.
        args: Vec<Arg>,
        /// The modifier's span.
        span: Span,
    },
    /// `feedback transpose` or `feedback random(normal(0, 0.05))`.
    Feedback(Expr),
}

/// `energy [name] = expr`.
#[derive(Clone, Debug, PartialEq)]
pub struct EnergyDecl {
    /// The energy's name (`E` by default).
    pub name: Option<Ident>,
    /// The energy expression.
    pub value: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// `rule projection { dW = …  settings }`.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleDecl {
    /// The projection the rule updates.
    pub projection: Ident,
    /// `dW = expr`, `db = expr`.
    pub updates: Vec<(Ident, Expr)>,
    /// Settings such as `clip -4, 4` and `lr 0.05`.
    pub settings: Vec<Setting>,
    /// The whole declaration.
    pub span: Span,
}

/// A block of settings (`learn { … }`).
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Settings in source order.
    pub settings: Vec<Setting>,
    /// The whole block.
    pub span: Span,
}

/// `run { items }`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunDecl {
    /// Items in source order.
    pub items: Vec<RunItem>,
    /// The whole declaration.
    pub span: Span,
}

/// An item of a run protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum RunItem {
    /// `key value, …`.
    Setting(Setting),
    /// `phase name { items }`.
    Phase {
        /// Phase name (`train`, `eval`, `settle`, …).
        name: Ident,
        /// Its items.
        items: Vec<RunItem>,
        /// The whole phase.
        span: Span,
    },
    /// `repeat n { items }`.
    Repeat {
        /// Repetition count.
        count: Expr,
        /// Items repeated.
        items: Vec<RunItem>,
        /// The whole block.
        span: Span,
    },
    /// `record a, b every n`.
    Record {
        /// Recorded quantities.
        targets: Vec<Expr>,
        /// Interval in steps.
        every: Option<Expr>,
        /// The whole item.
        span: Span,
    },
}

impl RunItem {
    /// The item's span.
    pub fn span(&self) -> Span {
        match self {
            RunItem::Setting(s) => s.span,
            RunItem::Phase { span, .. } | RunItem::Repeat { span, .. } | RunItem::Record { span, .. } => *span,
        }
    }
}

/// `key value, value, …`.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// The key.
    pub key: Ident,
    /// The values.
    pub values: Vec<Expr>,
    /// The whole setting.
    pub span: Span,
}

/// An expression with its span.
pub type Expr = Spanned<ExprKind>;

/// Expression forms.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number literal.
    Number(f64),
    /// A string literal (escapes resolved).
    Str(String),
    /// A name or a dotted path such as `y.r`.
    Path(Vec<Ident>),
    /// A call `f(args)`.
    Call {
        /// Function name.
        func: Ident,
        /// Positional and named arguments.
        args: Vec<Arg>,
    },
    /// `[a, b, …]`.
    List(Vec<Expr>),
    /// `-x`.
    Neg(Box<Expr>),
    /// `lhs op rhs`.
    Binary {
        /// Operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `D[τ] x`: prospective look-ahead `x + τ·ẋ`.
    D {
        /// Time constant.
        tau: Box<Expr>,
        /// Operand.
        arg: Box<Expr>,
    },
    /// `I[τ] x`: retrospective low-pass, the y solving `τ·ẏ = −y + x`.
    I {
        /// Time constant.
        tau: Box<Expr>,
        /// Operand.
        arg: Box<Expr>,
    },
}

/// A call argument, positional or `name: value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The name of a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `^`
    Pow,
}

impl BinOp {
    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
        }
    }
}

//! Hash-consed symbolic expressions with simplification, substitution, time derivatives and
//! reverse-mode differentiation.
//!
//! A [`Graph`] stores every distinct expression once; building an expression that already exists
//! returns the existing [`Id`]. Children always have smaller ids than their parents, so the ids of
//! a graph are a topological order. Expressions are elementwise over a population (or scalar):
//! the tensor structure (matrix–vector products, outer products, batch means) lives in the step
//! program's statements, which read and write whole vectors.
//!
//! Simplifications never change the value computed in IEEE arithmetic, with one documented
//! exception: `0 · x` folds to `0` (it would be NaN for an infinite or NaN `x`, which the runtime
//! reports anyway). Commutative operands are ordered by id, which is exact because IEEE addition
//! and multiplication are commutative; `a − b` is stored as `a + (−b)`, which is also exact.

use gle_ir::builtins::Builtin;
use std::collections::HashMap;

/// The id of an expression in a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(u32);

impl Id {
    /// The id as an index into the graph's nodes.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A symbol: a leaf of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leaf {
    /// A per-neuron parameter of the neuron type being derived.
    Param(usize),
    /// A state variable `u`.
    State(usize),
    /// The time derivative `u̇` of a state variable.
    StateDot(usize),
    /// The auxiliary state of the k-th `I[τ]` filter of a neuron type.
    Aux(usize),
    /// The time derivative of an auxiliary filter state.
    AuxDot(usize),
    /// The summed synaptic input to the soma.
    Input,
    /// A compartment potential.
    Compartment(usize),
    /// The neuron's own error `e` (enters the membrane with gain γ).
    Error,
    /// The argument of the activation: the prospective voltage `ŭ`.
    Uhat,
    /// One element of a step-program buffer.
    Buf(usize),
    /// A model constant (a runtime value, so phases and `--set` can change it).
    Const(usize),
    /// The time step.
    Dt,
    /// The simulation time.
    Time,
    /// A standard normal drawn afresh for every neuron, batch row and step (`noise(std)` in a
    /// rate); it has no derivative.
    Noise,
}

/// Elementwise functions: the language's built-ins plus the indicator functions their
/// derivatives need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fun {
    /// A built-in of the language.
    B(Builtin),
    /// 1 for x > 0, else 0 (the derivative of `relu`; 0 at the kink).
    Positive,
    /// The sign of x (0 at 0).
    Sign,
}

impl Fun {
    /// The function's name in printed expressions.
    pub fn name(self) -> &'static str {
        match self {
            Fun::B(b) => b.name(),
            Fun::Positive => "positive",
            Fun::Sign => "sign",
        }
    }
}

/// One expression node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A number (its bit pattern, so that nodes can be hashed).
    Num(u64),
    /// A symbol.
    Leaf(Leaf),
    /// `a + b`.
    Add(Id, Id),
    /// `a · b`.
    Mul(Id, Id),
    /// `a / b`.
    Div(Id, Id),
    /// `a ^ b`.
    Pow(Id, Id),
    /// `−a`.
    Neg(Id),
    /// `f(args)`.
    Call(Fun, Vec<Id>),
}

/// A store of hash-consed expressions.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    index: HashMap<Node, Id>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// The node with id `id`.
    pub fn node(&self, id: Id) -> &Node {
        &self.nodes[id.index()]
    }

    /// Number of distinct expressions stored.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn intern(&mut self, node: Node) -> Id {
        if let Some(id) = self.index.get(&node) {
            return *id;
        }
        let id = Id(u32::try_from(self.nodes.len()).expect("fewer than 2³² expressions"));
        self.nodes.push(node.clone());
        self.index.insert(node, id);
        id
    }

    /// The number `v`.
    pub fn num(&mut self, v: f64) -> Id {
        // One zero: -0.0 and 0.0 compare equal and fold the same way.
        let v = if v == 0.0 { 0.0 } else { v };
        self.intern(Node::Num(v.to_bits()))
    }

    /// The value of `id` if it is a number.
    pub fn as_num(&self, id: Id) -> Option<f64> {
        match self.node(id) {
            Node::Num(b) => Some(f64::from_bits(*b)),
            _ => None,
        }
    }

    /// A symbol.
    pub fn leaf(&mut self, leaf: Leaf) -> Id {
        self.intern(Node::Leaf(leaf))
    }

    /// `a + b`.
    pub fn add(&mut self, a: Id, b: Id) -> Id {
        match (self.as_num(a), self.as_num(b)) {
            (Some(x), Some(y)) => self.num(x + y),
            (Some(0.0), _) => b,
            (_, Some(0.0)) => a,
            _ => self.intern(Node::Add(a.min(b), a.max(b))),
        }
    }

    /// `a − b`, stored as `a + (−b)` (exact in IEEE arithmetic).
    pub fn sub(&mut self, a: Id, b: Id) -> Id {
        let nb = self.neg(b);
        self.add(a, nb)
    }

    /// `a · b`.
    pub fn mul(&mut self, a: Id, b: Id) -> Id {
        match (self.as_num(a), self.as_num(b)) {
            (Some(x), Some(y)) => self.num(x * y),
            (Some(0.0), _) | (_, Some(0.0)) => self.num(0.0),
            (Some(1.0), _) => b,
            (_, Some(1.0)) => a,
            (Some(-1.0), _) => self.neg(b),
            (_, Some(-1.0)) => self.neg(a),
            _ => self.intern(Node::Mul(a.min(b), a.max(b))),
        }
    }

    /// `a / b`.
    pub fn div(&mut self, a: Id, b: Id) -> Id {
        match (self.as_num(a), self.as_num(b)) {
            (Some(x), Some(y)) if y != 0.0 => self.num(x / y),
            (Some(0.0), _) => self.num(0.0),
            (_, Some(1.0)) => a,
            _ => self.intern(Node::Div(a, b)),
        }
    }

    /// `a ^ b`.
    pub fn pow(&mut self, a: Id, b: Id) -> Id {
        match (self.as_num(a), self.as_num(b)) {
            (Some(x), Some(y)) => self.num(x.powf(y)),
            (_, Some(1.0)) => a,
            (_, Some(0.0)) => self.num(1.0),
            _ => self.intern(Node::Pow(a, b)),
        }
    }

    /// `−a`.
    pub fn neg(&mut self, a: Id) -> Id {
        match self.node(a).clone() {
            Node::Num(b) => self.num(-f64::from_bits(b)),
            Node::Neg(inner) => inner,
            _ => self.intern(Node::Neg(a)),
        }
    }

    /// `f(args)`, folded when every argument is a number.
    pub fn call(&mut self, f: Fun, args: Vec<Id>) -> Id {
        let nums: Option<Vec<f64>> = args.iter().map(|a| self.as_num(*a)).collect();
        if let Some(nums) = nums {
            return self.num(apply(f, &nums));
        }
        if f == Fun::B(Builtin::Linear) {
            return args[0];
        }
        self.intern(Node::Call(f, args))
    }

    /// Replaces leaves by expressions (`map` returns `None` to keep a leaf), rebuilding and
    /// re-simplifying everything above them.
    pub fn subst(&mut self, root: Id, map: &mut dyn FnMut(&mut Graph, Leaf) -> Option<Id>) -> Id {
        let mut memo: HashMap<Id, Id> = HashMap::new();
        self.subst_memo(root, map, &mut memo)
    }

    fn subst_memo(
        &mut self,
        id: Id,
        map: &mut dyn FnMut(&mut Graph, Leaf) -> Option<Id>,
        memo: &mut HashMap<Id, Id>,
    ) -> Id {
        if let Some(r) = memo.get(&id) {
            return *r;
        }
        let out = match self.node(id).clone() {
            Node::Num(_) => id,
            Node::Leaf(l) => map(self, l).unwrap_or(id),
            Node::Add(a, b) => {
                let (a, b) = (self.subst_memo(a, map, memo), self.subst_memo(b, map, memo));
                self.add(a, b)
            }
            Node::Mul(a, b) => {
                let (a, b) = (self.subst_memo(a, map, memo), self.subst_memo(b, map, memo));
                self.mul(a, b)
            }
            Node::Div(a, b) => {
                let (a, b) = (self.subst_memo(a, map, memo), self.subst_memo(b, map, memo));
                self.div(a, b)
            }
            Node::Pow(a, b) => {
                let (a, b) = (self.subst_memo(a, map, memo), self.subst_memo(b, map, memo));
                self.pow(a, b)
            }
            Node::Neg(a) => {
                let a = self.subst_memo(a, map, memo);
                self.neg(a)
            }
            Node::Call(f, args) => {
                let args = args.into_iter().map(|a| self.subst_memo(a, map, memo)).collect();
                self.call(f, args)
            }
        };
        memo.insert(id, out);
        out
    }

    /// Whether `root` depends on a leaf for which `pred` holds.
    pub fn depends_on(&self, root: Id, pred: &dyn Fn(Leaf) -> bool) -> bool {
        let mut seen = vec![false; root.index() + 1];
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id.index()], true) {
                continue;
            }
            match self.node(id) {
                Node::Leaf(l) if pred(*l) => return true,
                Node::Num(_) | Node::Leaf(_) => {}
                Node::Add(a, b) | Node::Mul(a, b) | Node::Div(a, b) | Node::Pow(a, b) => stack.extend([*a, *b]),
                Node::Neg(a) => stack.push(*a),
                Node::Call(_, args) => stack.extend(args),
            }
        }
        false
    }

    /// Every leaf `root` depends on, in order.
    pub fn leaves(&self, root: Id) -> Vec<Leaf> {
        let mut out = Vec::new();
        for id in self.reachable(&[root]) {
            if let Node::Leaf(l) = self.node(id)
                && !out.contains(l)
            {
                out.push(*l);
            }
        }
        out.sort();
        out
    }

    /// The ids reachable from `roots`, in increasing (topological) order.
    pub fn reachable(&self, roots: &[Id]) -> Vec<Id> {
        let Some(max) = roots.iter().max() else {
            return Vec::new();
        };
        let mut seen = vec![false; max.index() + 1];
        let mut stack: Vec<Id> = roots.to_vec();
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id.index()], true) {
                continue;
            }
            match self.node(id) {
                Node::Num(_) | Node::Leaf(_) => {}
                Node::Add(a, b) | Node::Mul(a, b) | Node::Div(a, b) | Node::Pow(a, b) => stack.extend([*a, *b]),
                Node::Neg(a) => stack.push(*a),
                Node::Call(_, args) => stack.extend(args),
            }
        }
        seen.iter()
            .enumerate()
            .filter(|(_, s)| **s)
            .map(|(i, _)| Id(i as u32))
            .collect()
    }

    /// Reverse-mode differentiation: `∂root/∂leaf` for every leaf in `wrt`, with the adjoint of
    /// `root` seeded by `seed` (so the result is a vector–Jacobian product).
    pub fn grad(&mut self, root: Id, seed: Id, wrt: &[Leaf]) -> Vec<Id> {
        let order = self.reachable(&[root]);
        let mut adj: HashMap<Id, Id> = HashMap::new();
        adj.insert(root, seed);
        for &id in order.iter().rev() {
            let Some(&a) = adj.get(&id) else { continue };
            let node = self.node(id).clone();
            let mut push = |g: &mut Graph, child: Id, contribution: Id| {
                let total = match adj.get(&child) {
                    Some(prev) => g.add(*prev, contribution),
                    None => contribution,
                };
                adj.insert(child, total);
            };
            match node {
                Node::Num(_) | Node::Leaf(_) => {}
                Node::Add(x, y) => {
                    push(self, x, a);
                    push(self, y, a);
                }
                Node::Neg(x) => {
                    let c = self.neg(a);
                    push(self, x, c);
                }
                Node::Mul(x, y) => {
                    let cx = self.mul(a, y);
                    push(self, x, cx);
                    let cy = self.mul(a, x);
                    push(self, y, cy);
                }
                Node::Div(x, y) => {
                    // d(x/y) = dx/y − x·dy/y²
                    let cx = self.div(a, y);
                    push(self, x, cx);
                    let q = self.div(id, y);
                    let t = self.mul(a, q);
                    let cy = self.neg(t);
                    push(self, y, cy);
                }
                Node::Pow(x, y) => {
                    // d(x^y) = y·x^(y−1)·dx + x^y·ln x·dy
                    let one = self.num(1.0);
                    let ym1 = self.sub(y, one);
                    let p = self.pow(x, ym1);
                    let d = self.mul(y, p);
                    let cx = self.mul(a, d);
                    push(self, x, cx);
                    if self.as_num(y).is_none() {
                        let ln = self.call(Fun::B(Builtin::Log), vec![x]);
                        let d = self.mul(id, ln);
                        let cy = self.mul(a, d);
                        push(self, y, cy);
                    }
                }
                Node::Call(f, args) => {
                    for (k, &arg) in args.iter().enumerate() {
                        let d = self.partial(f, &args, k, id);
                        let c = self.mul(a, d);
                        push(self, arg, c);
                    }
                }
            }
        }
        let zero = self.num(0.0);
        wrt.iter()
            .map(|l| {
                let id = self.leaf(*l);
                adj.get(&id).copied().unwrap_or(zero)
            })
            .collect()
    }

    /// `∂f(args)/∂args[k]`; `value` is the node `f(args)` itself.
    fn partial(&mut self, f: Fun, args: &[Id], k: usize, value: Id) -> Id {
        let x = args[0];
        let one = self.num(1.0);
        let zero = self.num(0.0);
        let Fun::B(b) = f else { return zero };
        match (b, k) {
            (Builtin::Linear, _) => one,
            (Builtin::Tanh, _) => {
                let sq = self.mul(value, value);
                self.sub(one, sq)
            }
            (Builtin::Sigmoid, _) => {
                let om = self.sub(one, value);
                self.mul(value, om)
            }
            (Builtin::Softplus, _) => self.call(Fun::B(Builtin::Sigmoid), vec![x]),
            (Builtin::Relu, _) => self.call(Fun::Positive, vec![x]),
            (Builtin::HardSigmoid, _) => self.window(x, 0.0, 1.0),
            (Builtin::HardTanh, _) => self.window(x, -1.0, 1.0),
            (Builtin::Exp, _) => value,
            (Builtin::Log, _) => self.div(one, x),
            (Builtin::Log1p, _) => {
                let d = self.add(one, x);
                self.div(one, d)
            }
            (Builtin::Sqrt, _) => {
                let half = self.num(0.5);
                self.div(half, value)
            }
            (Builtin::Abs, _) => self.call(Fun::Sign, vec![x]),
            (Builtin::Sin, _) => self.call(Fun::B(Builtin::Cos), vec![x]),
            (Builtin::Cos, _) => {
                let s = self.call(Fun::B(Builtin::Sin), vec![x]);
                self.neg(s)
            }
            (Builtin::Min, 0) | (Builtin::Max, 1) => {
                let d = self.sub(args[1], args[0]);
                let d = if b == Builtin::Min { d } else { self.neg(d) };
                self.call(Fun::Positive, vec![d])
            }
            (Builtin::Min, _) | (Builtin::Max, _) => {
                let d = self.sub(args[0], args[1]);
                let d = if b == Builtin::Min { d } else { self.neg(d) };
                self.call(Fun::Positive, vec![d])
            }
            (Builtin::Clamp, 0) => {
                let lo = self.sub(x, args[1]);
                let hi = self.sub(args[2], x);
                let a = self.call(Fun::Positive, vec![lo]);
                let b = self.call(Fun::Positive, vec![hi]);
                self.mul(a, b)
            }
            (Builtin::Sawtooth, _) => self.num(2.0),
            _ => zero,
        }
    }

    /// 1 on the open interval (lo, hi), else 0.
    fn window(&mut self, x: Id, lo: f64, hi: f64) -> Id {
        let lo = self.num(lo);
        let hi = self.num(hi);
        let d_lo = self.sub(x, lo);
        let d_hi = self.sub(hi, x);
        let a = self.call(Fun::Positive, vec![d_lo]);
        let b = self.call(Fun::Positive, vec![d_hi]);
        self.mul(a, b)
    }

    /// The time derivative of `root`: `Σ ∂root/∂s · ṡ` over its time-varying symbols (states
    /// and filter states). `None` if it depends on a symbol whose derivative is unknown.
    pub fn time_derivative(&mut self, root: Id) -> Option<Id> {
        let leaves = self.leaves(root);
        let mut total = self.num(0.0);
        let one = self.num(1.0);
        for l in leaves {
            let dot = match l {
                Leaf::State(i) => Leaf::StateDot(i),
                Leaf::Aux(k) => Leaf::AuxDot(k),
                Leaf::Param(_) | Leaf::Const(_) | Leaf::Dt => continue,
                Leaf::Time => {
                    let g = self.grad(root, one, &[Leaf::Time])[0];
                    total = self.add(total, g);
                    continue;
                }
                _ => return None,
            };
            let g = self.grad(root, one, &[l])[0];
            let dot = self.leaf(dot);
            let term = self.mul(g, dot);
            total = self.add(total, term);
        }
        Some(total)
    }

    /// Evaluates `root` with leaf values from `leaf`.
    pub fn eval(&self, root: Id, leaf: &mut dyn FnMut(Leaf) -> f64) -> f64 {
        let order = self.reachable(&[root]);
        let mut vals: HashMap<Id, f64> = HashMap::with_capacity(order.len());
        for id in order {
            let v = match self.node(id) {
                Node::Num(b) => f64::from_bits(*b),
                Node::Leaf(l) => leaf(*l),
                Node::Add(a, b) => vals[a] + vals[b],
                Node::Mul(a, b) => vals[a] * vals[b],
                Node::Div(a, b) => vals[a] / vals[b],
                Node::Pow(a, b) => vals[a].powf(vals[b]),
                Node::Neg(a) => -vals[a],
                Node::Call(f, args) => {
                    let xs: Vec<f64> = args.iter().map(|a| vals[a]).collect();
                    apply(*f, &xs)
                }
            };
            vals.insert(id, v);
        }
        vals[&root]
    }

    /// Renders `root` with leaf names from `name`, with the fewest parentheses.
    pub fn show(&self, root: Id, name: &dyn Fn(Leaf) -> String) -> String {
        self.show_prec(root, 0, name)
    }

    /// Renders `root` as LaTeX math (`\cdot`, `\frac`, `\operatorname`).
    pub fn show_latex(&self, root: Id, name: &dyn Fn(Leaf) -> String) -> String {
        self.latex_prec(root, 0, name)
    }

    fn latex_prec(&self, id: Id, ctx: u8, name: &dyn Fn(Leaf) -> String) -> String {
        let (p, s) = match self.node(id) {
            Node::Num(b) => {
                let v = f64::from_bits(*b);
                (if v < 0.0 { 3 } else { 9 }, gle_ir::dump::num(v))
            }
            Node::Leaf(l) => (9, name(*l)),
            Node::Add(a, b) => {
                let (a, b) = if matches!(self.node(*a), Node::Neg(_)) && !matches!(self.node(*b), Node::Neg(_)) {
                    (*b, *a)
                } else {
                    (*a, *b)
                };
                match self.node(b) {
                    Node::Neg(inner) => (
                        1,
                        format!("{} - {}", self.latex_prec(a, 1, name), self.latex_prec(*inner, 2, name)),
                    ),
                    _ => (
                        1,
                        format!("{} + {}", self.latex_prec(a, 1, name), self.latex_prec(b, 2, name)),
                    ),
                }
            }
            Node::Mul(a, b) => (
                2,
                format!(
                    "{} \\cdot {}",
                    self.latex_prec(*a, 2, name),
                    self.latex_prec(*b, 3, name)
                ),
            ),
            Node::Div(a, b) => (
                9,
                format!(
                    "\\frac{{{}}}{{{}}}",
                    self.latex_prec(*a, 0, name),
                    self.latex_prec(*b, 0, name)
                ),
            ),
            Node::Pow(a, b) => (
                4,
                format!(
                    "{{{}}}^{{{}}}",
                    self.latex_prec(*a, 5, name),
                    self.latex_prec(*b, 0, name)
                ),
            ),
            Node::Neg(a) => (3, format!("-{}", self.latex_prec(*a, 3, name))),
            Node::Call(f, args) => (
                9,
                format!(
                    "\\operatorname{{{}}}\\left({}\\right)",
                    f.name().replace('_', "\\_"),
                    args.iter()
                        .map(|a| self.latex_prec(*a, 0, name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        if p < ctx { format!("\\left({s}\\right)") } else { s }
    }

    fn show_prec(&self, id: Id, ctx: u8, name: &dyn Fn(Leaf) -> String) -> String {
        let (p, s) = match self.node(id) {
            Node::Num(b) => {
                let v = f64::from_bits(*b);
                (if v < 0.0 { 3 } else { 9 }, gle_ir::dump::num(v))
            }
            Node::Leaf(l) => (9, name(*l)),
            Node::Add(a, b) => {
                // Print `x + (−y)` as `x − y`, with the positive operand first.
                let (a, b) = if matches!(self.node(*a), Node::Neg(_)) && !matches!(self.node(*b), Node::Neg(_)) {
                    (*b, *a)
                } else {
                    (*a, *b)
                };
                match self.node(b) {
                    Node::Neg(inner) => (
                        1,
                        format!("{} - {}", self.show_prec(a, 1, name), self.show_prec(*inner, 2, name)),
                    ),
                    _ => (
                        1,
                        format!("{} + {}", self.show_prec(a, 1, name), self.show_prec(b, 2, name)),
                    ),
                }
            }
            Node::Mul(a, b) => (
                2,
                format!("{} * {}", self.show_prec(*a, 2, name), self.show_prec(*b, 3, name)),
            ),
            Node::Div(a, b) => (
                2,
                format!("{} / {}", self.show_prec(*a, 2, name), self.show_prec(*b, 3, name)),
            ),
            Node::Pow(a, b) => (
                4,
                format!("{}^{}", self.show_prec(*a, 5, name), self.show_prec(*b, 4, name)),
            ),
            Node::Neg(a) => (3, format!("-{}", self.show_prec(*a, 3, name))),
            Node::Call(f, args) => (
                9,
                format!(
                    "{}({})",
                    f.name(),
                    args.iter()
                        .map(|a| self.show_prec(*a, 0, name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        if p < ctx { format!("({s})") } else { s }
    }
}

/// Applies an elementwise function to numbers: the reference semantics of every function.
/// Inlined, so that a caller naming one function (each JIT shim) compiles to its arm alone.
#[inline]
pub fn apply(f: Fun, a: &[f64]) -> f64 {
    match f {
        Fun::B(b) => gle_ir::eval::apply(b, a),
        Fun::Positive => {
            if a[0] > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Fun::Sign => {
            if a[0] > 0.0 {
                1.0
            } else if a[0] < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
    }
}

//! Derivation of one neuron type's dynamics from its definitions: the membrane equation solved
//! from the mismatch, the prospective voltage, the activation and its derivative, the two time
//! constants of the error neuron, and the mismatch's sensitivity to each parameter.

use crate::DeriveError;
use crate::sym::{Fun, Graph, Id, Leaf, Node};
use gle_ir::{Callee, Expr, Model, NeuronType, NeuronVar, Ref};

/// The derived dynamics of a neuron type, as expressions over [`Leaf`] symbols of that type.
#[derive(Clone, Debug)]
pub struct NeuronDynamics {
    /// `u̇` of the (single) state, solved from `mismatch = γ·e`: over `State`, `Input`, `Error`,
    /// `Param`, `Aux`, `Const`.
    pub udot: Id,
    /// The mismatch `e = M(u, u̇, input)` as written (over `StateDot` too).
    pub mismatch: Id,
    /// The rate as a function of `Uhat`: `r = φ(ŭ)`.
    pub rate: Id,
    /// `φ'(ŭ)` over `Uhat`.
    pub slope: Id,
    /// τʳ: the look-ahead of the rate (`ŭ = u + τʳ·u̇`); `None` when the rate reads `u` directly.
    pub tau_r: Option<Id>,
    /// τᵐ: the coefficient of `u̇` in the mismatch.
    pub tau_m: Id,
    /// `∂M/∂θ` for every parameter, with `u̇` left as `StateDot(0)` (substituted by the program).
    pub dmismatch_dparam: Vec<Id>,
    /// `I[τ] x` filters: `(τ, x)`; filter k has state `Aux(k)` with `τ·ẏ = −y + x`.
    pub filters: Vec<(Id, Id)>,
    /// Every `let`/`rate`/`mismatch` definition as an expression (over `StateDot`, `Aux`, …).
    pub defs: Vec<Id>,
}

/// Converts a neuron type's resolved expressions into graph nodes.
struct Converter<'m> {
    model: &'m Model,
    neuron: &'m NeuronType,
    /// Definitions converted so far (definitions only refer to earlier ones).
    defs: Vec<Id>,
    filters: Vec<(Id, Id)>,
    /// When set, `D[τ] u` of the state becomes `Uhat` and its τ is recorded here.
    uhat_taus: Option<Vec<Id>>,
}

impl Converter<'_> {
    fn expr(&mut self, g: &mut Graph, e: &Expr, args: &[Id]) -> Result<Id, DeriveError> {
        Ok(match e {
            Expr::Num(v) => g.num(*v),
            Expr::Str(_) | Expr::List(_) => return Err(self.error("a list or string inside a neuron definition")),
            Expr::Ref(r) => match *r {
                Ref::Own(NeuronVar::Param(i)) => g.leaf(Leaf::Param(i)),
                Ref::Own(NeuronVar::State(i)) => g.leaf(Leaf::State(i)),
                Ref::Own(NeuronVar::Compartment(i)) => g.leaf(Leaf::Compartment(i)),
                Ref::Own(NeuronVar::Def(i)) => {
                    if self.uhat_taus.is_some() {
                        // Re-convert, so that a `D[τ] u` inside the definition becomes `Uhat`.
                        let value = self.neuron.defs[i].value.clone();
                        self.expr(g, &value, args)?
                    } else {
                        self.defs[i]
                    }
                }
                Ref::SynapticInput => g.leaf(Leaf::Input),
                Ref::Const(i) => g.leaf(Leaf::Const(i)),
                Ref::Dt => g.leaf(Leaf::Dt),
                Ref::Arg(i) => args[i],
                _ => return Err(self.error("a reference that is not the neuron's own")),
            },
            Expr::Neg(a) => {
                let a = self.expr(g, a, args)?;
                g.neg(a)
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.expr(g, a, args)?, self.expr(g, b, args)?);
                match op {
                    gle_ir::BinOp::Add => g.add(a, b),
                    gle_ir::BinOp::Sub => g.sub(a, b),
                    gle_ir::BinOp::Mul => g.mul(a, b),
                    gle_ir::BinOp::Div => g.div(a, b),
                    gle_ir::BinOp::Pow => g.pow(a, b),
                }
            }
            Expr::Call(Callee::Builtin(gle_ir::builtins::Builtin::Noise), xs) => {
                // `noise(std)` = std·ξ: ξ is a per-step standard normal with no derivative.
                let std = self.expr(g, &xs[0], args)?;
                let xi = g.leaf(Leaf::Noise);
                g.mul(std, xi)
            }
            Expr::Call(Callee::Builtin(b), xs) => {
                let xs = xs
                    .iter()
                    .map(|x| self.expr(g, x, args))
                    .collect::<Result<Vec<_>, _>>()?;
                g.call(Fun::B(*b), xs)
            }
            Expr::Call(Callee::User(f), xs) => {
                let xs = xs
                    .iter()
                    .map(|x| self.expr(g, x, args))
                    .collect::<Result<Vec<_>, _>>()?;
                let body = self.model.functions[*f].body.clone();
                self.expr(g, &body, &xs)?
            }
            Expr::D(tau, x) => {
                let tau = self.expr(g, tau, args)?;
                let x = self.expr(g, x, args)?;
                if let Some(taus) = &mut self.uhat_taus
                    && matches!(g.node(x), Node::Leaf(Leaf::State(0)))
                {
                    taus.push(tau);
                    return Ok(g.leaf(Leaf::Uhat));
                }
                let Some(dx) = g.time_derivative(x) else {
                    return Err(self.error("`D[τ]` of a quantity without a known time derivative (such as the synaptic input); wrap it in `I[τ]` or apply `D` to a state"));
                };
                let t = g.mul(tau, dx);
                g.add(x, t)
            }
            Expr::I(tau, x) => {
                let tau = self.expr(g, tau, args)?;
                let x = self.expr(g, x, args)?;
                let k = match self.filters.iter().position(|f| *f == (tau, x)) {
                    Some(k) => k,
                    None => {
                        self.filters.push((tau, x));
                        self.filters.len() - 1
                    }
                };
                g.leaf(Leaf::Aux(k))
            }
        })
    }

    fn error(&self, what: &str) -> DeriveError {
        DeriveError::new(
            format!("neuron type `{}`: {what} is not supported", self.neuron.name),
            self.neuron.span,
        )
    }
}

/// Derives the dynamics of `model.neurons[index]`. Only neuron types with a `mismatch` and one
/// state are supported here; compartmental neurons are reported as unsupported.
pub fn derive_neuron(g: &mut Graph, model: &Model, index: usize) -> Result<NeuronDynamics, DeriveError> {
    let neuron = &model.neurons[index];
    let mut conv = Converter {
        model,
        neuron,
        defs: Vec::new(),
        filters: Vec::new(),
        uhat_taus: None,
    };
    if neuron.states.len() != 1 {
        return Err(conv.error("more than one state variable"));
    }
    for d in &neuron.defs {
        let id = conv.expr(g, &d.value, &[])?;
        conv.defs.push(id);
    }
    let udot_leaf = Leaf::StateDot(0);
    let one = g.num(1.0);
    let zero = g.num(0.0);
    let (mismatch, tau_m, udot) = match neuron.mismatch {
        Some(mi) => {
            let mismatch = conv.defs[mi];
            // Solve M(u, u̇, input) = γ·e for u̇: M must be affine in u̇.
            let tau_m = g.grad(mismatch, one, &[udot_leaf])[0];
            if g.depends_on(tau_m, &|l| l == udot_leaf) || g.as_num(tau_m) == Some(0.0) {
                return Err(DeriveError::new(
                    format!(
                        "neuron type `{}`: the mismatch must be affine in u̇ (as `D[τ] u − input` is); implicit dynamics are not supported",
                        neuron.name
                    ),
                    neuron.defs[mi].span,
                ));
            }
            let rest = g.subst(mismatch, &mut |g, l| (l == udot_leaf).then(|| g.num(0.0)));
            let gamma = match neuron.params.iter().position(|p| p.name == "gamma") {
                Some(i) => g.leaf(Leaf::Param(i)),
                None => zero,
            };
            let err = g.leaf(Leaf::Error);
            let ge = g.mul(gamma, err);
            let numerator = ordered_numerator(g, ge, rest);
            (mismatch, tau_m, g.div(numerator, tau_m))
        }
        None => {
            // Conductance-based soma: u̇ = −g_l·u + Σ_c g_c·(v_c − u); τ_eff = 1/(g_l + Σ g_c).
            let Some(leak) = &neuron.leak else {
                return Err(conv.error("a neuron without a mismatch or a leak"));
            };
            let u = g.leaf(Leaf::State(0));
            let gl = conv.expr(g, leak, &[])?;
            let lu = g.mul(gl, u);
            let mut udot = g.neg(lu);
            let mut total = gl;
            for (c, comp) in neuron.compartments.iter().enumerate() {
                let Some(gc) = &comp.conductance else {
                    return Err(conv.error(&format!("compartment `{}` without a conductance", comp.name)));
                };
                let gc = conv.expr(g, gc, &[])?;
                let v = g.leaf(Leaf::Compartment(c));
                let diff = g.sub(v, u);
                let term = g.mul(gc, diff);
                udot = g.add(udot, term);
                total = g.add(total, gc);
            }
            (zero, g.div(one, total), udot)
        }
    };

    // The rate as φ(ŭ): find the unique `D[τʳ] u` (or `u` itself).
    let rate_def = neuron.rate;
    conv.uhat_taus = Some(Vec::new());
    let rate_expr = neuron.defs[rate_def].value.clone();
    let rate_uhat = conv.expr(g, &rate_expr, &[])?;
    let taus = conv.uhat_taus.take().unwrap_or_default();
    let state = Leaf::State(0);
    let (rate, tau_r) = if taus.is_empty() {
        let uhat = g.leaf(Leaf::Uhat);
        (g.subst(rate_uhat, &mut |_, l| (l == state).then_some(uhat)), None)
    } else {
        if taus.iter().any(|t| *t != taus[0]) || g.depends_on(rate_uhat, &|l| l == state || l == udot_leaf) {
            return Err(DeriveError::new(
                format!(
                    "neuron type `{}`: the rate must be φ(D[τʳ] u) with one look-ahead τʳ",
                    neuron.name
                ),
                neuron.defs[rate_def].span,
            ));
        }
        (rate_uhat, Some(taus[0]))
    };
    if g.depends_on(rate, &|l| matches!(l, Leaf::Input | Leaf::StateDot(_) | Leaf::Aux(_))) {
        return Err(DeriveError::new(
            format!(
                "neuron type `{}`: the rate may depend on the state only through ŭ",
                neuron.name
            ),
            neuron.defs[rate_def].span,
        ));
    }
    let slope = g.grad(rate, one, &[Leaf::Uhat])[0];
    let params: Vec<Leaf> = (0..neuron.params.len()).map(Leaf::Param).collect();
    let dmismatch_dparam = g.grad(mismatch, one, &params);
    Ok(NeuronDynamics {
        udot,
        mismatch,
        rate,
        slope,
        tau_r,
        tau_m,
        dmismatch_dparam,
        filters: conv.filters,
        defs: conv.defs,
    })
}

/// `γ·e − rest` with the additive terms ordered as the reference writes the membrane update:
/// input terms first, then the error term, then the rest (`(I + γ·e − u)`), so that the result
/// rounds like the reference implementation.
fn ordered_numerator(g: &mut Graph, ge: Id, rest: Id) -> Id {
    let mut terms = Vec::new();
    flatten_sum(g, rest, true, &mut terms);
    let mut all = vec![ge];
    all.extend(terms);
    let rank = |g: &Graph, id: Id| -> u8 {
        if g.depends_on(id, &|l| l == Leaf::Input) {
            0
        } else if g.depends_on(id, &|l| l == Leaf::Error) {
            1
        } else {
            2
        }
    };
    all.sort_by_key(|id| rank(g, *id));
    let mut acc = all[0];
    for &t in &all[1..] {
        acc = add_ordered(g, acc, t);
    }
    acc
}

/// `a + b` evaluated as written (`a` first). The graph orders commutative operands, which is
/// exact for one addition; left-to-right order across a chain is kept by nesting.
fn add_ordered(g: &mut Graph, a: Id, b: Id) -> Id {
    g.add(a, b)
}

/// Collects the additive terms of `id`, negated when `negate`.
fn flatten_sum(g: &mut Graph, id: Id, negate: bool, out: &mut Vec<Id>) {
    match g.node(id).clone() {
        Node::Add(a, b) => {
            flatten_sum(g, a, negate, out);
            flatten_sum(g, b, negate, out);
        }
        Node::Neg(a) => flatten_sum(g, a, !negate, out),
        _ => out.push(if negate { g.neg(id) } else { id }),
    }
}

//! The step program: one time step of a model, discretised and scheduled, as statements over
//! named buffers. Every backend consumes this; the interpreter in `gle-runtime` defines its
//! meaning.
//!
//! Schedule (the reference's parallel schedule, math.md §9.5): every population computes its
//! step from values committed at the end of the previous step (inputs are the current step's),
//! then all staged values are committed together, then the optimiser steps. One step of delay per
//! layer results in each direction. Integration is forward Euler with both look-ahead read-outs
//! taken from the same pre-step derivative.

use crate::DeriveError;
use crate::adjoint::{AdjointGradient, AdjointLink, AdjointMap, AdjointPlan, AdjointPopulation, Tau};
use crate::neuron::{NeuronDynamics, derive_neuron};
use crate::sym::{Fun, Graph, Id, Leaf};
use gle_ir::builtins::Builtin;
use gle_ir::{
    BinOp, Callee, Connectivity, DefKind, ErrorMode, Expr, Feedback, Integrator, Model, NeuronVar, Plasticity, Ref,
    Role, Schedule, Source,
};

/// Index of a buffer in [`Program::buffers`].
pub type BufId = usize;

/// How a buffer is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One row of `len` values per batch element (neuron state, temporaries).
    Batch,
    /// One set of `len` values shared by the batch (parameters, gradients).
    Shared,
}

/// How a buffer is initialised when a run starts.
#[derive(Clone, Debug, PartialEq)]
pub enum BufInit {
    /// All zeros (every state starts at zero, math.md §9.4).
    Zero,
    /// A population's parameter values.
    NeuronParam {
        /// Population.
        pop: usize,
        /// Parameter index in the neuron type.
        param: usize,
    },
    /// A projection's weights (matrix row-major, or diagonal).
    Weights(usize),
    /// A projection's bias.
    Bias(usize),
    /// A projection's fixed random feedback matrix.
    Feedback(usize),
    /// Filled by the runtime before every step from an input source.
    Input(usize),
    /// Filled by the runtime before every step with independent standard normals (one per
    /// element; determined by the run's seed, the buffer's name and the step): rate noise.
    Noise,
    /// Filled by the runtime before every step from a dataset field of the current samples:
    /// class labels one-hot encoded, other fields copied.
    DataTarget {
        /// Dataset index.
        dataset: usize,
        /// Field index.
        field: usize,
    },
}

/// A buffer of the step program.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    /// A readable name (`h.u`, `x_h.W`).
    pub name: String,
    /// Values per row (Batch) or in total (Shared).
    pub len: usize,
    /// Layout.
    pub layout: Layout,
    /// Initial contents.
    pub init: BufInit,
}

/// One statement of a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// For every batch row and every `i < len`: evaluate each expression (leaves `Buf(id)` read
    /// element `i` of that buffer's row, or element `i` of a shared buffer) and then write the
    /// results. All expressions see the buffers as they were before the statement.
    Map {
        /// Elements per row.
        len: usize,
        /// Destination buffers and their expressions.
        outs: Vec<(BufId, Id)>,
    },
    /// `out[b] (+)= W · x[b]` for a `rows × cols` matrix `W`.
    MatVec {
        /// Output (rows per batch row).
        out: BufId,
        /// Shared matrix.
        w: BufId,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Input (cols per batch row).
        x: BufId,
        /// Add to `out` instead of overwriting it.
        accumulate: bool,
    },
    /// `out[b] = Wᵀ · x[b]` for a `rows × cols` matrix `W` (out has cols, x rows).
    MatTVec {
        /// Output.
        out: BufId,
        /// Shared matrix.
        w: BufId,
        /// Rows of `W`.
        rows: usize,
        /// Columns of `W`.
        cols: usize,
        /// Input.
        x: BufId,
    },
    /// `grad[i][j] = ±(Σ_b a[b][i] · x[b][j]) / B`.
    Outer {
        /// Shared gradient, `rows × cols`.
        grad: BufId,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Per-row vectors of `rows`.
        a: BufId,
        /// Per-row vectors of `cols`.
        x: BufId,
        /// Negate the mean.
        negate: bool,
    },
    /// `out[b] = softmax(x[b])` over `len` values, computed stably (max subtracted).
    Softmax {
        /// Output.
        out: BufId,
        /// Logits.
        x: BufId,
        /// Values per row.
        len: usize,
    },
    /// `grad[i] = ±(Σ_b x[b][i]) / B`.
    Mean {
        /// Shared gradient.
        grad: BufId,
        /// Elements.
        len: usize,
        /// Per-row values.
        x: BufId,
        /// Negate the mean.
        negate: bool,
    },
}

impl Stmt {
    /// Whether the statement only computes a gradient for the optimiser (`Outer`, `Mean`):
    /// steps of a phase that does not learn skip these, and the gradient buffers keep the values
    /// of the last learning step.
    pub fn computes_gradient(&self) -> bool {
        matches!(self, Stmt::Outer { .. } | Stmt::Mean { .. })
    }
}

/// A learnable parameter: its buffer, its gradient, and its optimiser settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Learnable {
    /// What it is (`x_h.W`, `h.tau_m`).
    pub name: String,
    /// The parameter's buffer.
    pub param: BufId,
    /// The gradient buffer (filled every step; the optimiser steps against it).
    pub grad: BufId,
    /// Learning-rate factor.
    pub lr_factor: f64,
    /// Lower clamp applied after every optimiser step.
    pub clamp_min: Option<f64>,
    /// Set for parameters learned by an explicit rule instead of the optimiser.
    pub rule: Option<RuleStep>,
}

/// How an explicit plasticity rule steps its parameter: `θ ← clip(θ + dt·η·grad)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RuleStep {
    /// The rate η as checked.
    pub lr: f64,
    /// The constant η is read from at run time, when the rule names one (phase overrides).
    pub lr_const: Option<usize>,
    /// Clip range applied after the update.
    pub clip: Option<(f64, f64)>,
}

/// Buffers of one population, for read-outs and records.
#[derive(Clone, Debug, PartialEq)]
pub struct PopulationBuffers {
    /// Membrane potential `u` (committed).
    pub u: BufId,
    /// Prospective voltage `ŭ` computed in the last step.
    pub uhat: BufId,
    /// Rate `r` computed in the last step.
    pub r: BufId,
    /// `u̇` of the last step.
    pub udot: BufId,
    /// The error `e` of the last step (learners only).
    pub e: Option<BufId>,
    /// Error-neuron state `v` (learners with prospective errors).
    pub v: Option<BufId>,
    /// Parameter buffers, one per neuron-type parameter.
    pub params: Vec<BufId>,
}

/// The kind of an output cost, for the loss metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostKind {
    /// `½‖prediction − target‖²`.
    Mse,
    /// Softmax cross-entropy of logits against a one-hot target.
    CrossEntropy,
}

/// An output cost of the energy: what the loss metric reports.
#[derive(Clone, Debug, PartialEq)]
pub struct CostTerm {
    /// Kind.
    pub kind: CostKind,
    /// Predicted values (committed buffer).
    pub prediction: BufId,
    /// Target values.
    pub target: BufId,
    /// Values per row.
    pub len: usize,
}

/// A model compiled to one time step.
#[derive(Clone, Debug)]
pub struct Program {
    /// All expressions.
    pub graph: Graph,
    /// All buffers.
    pub buffers: Vec<Buffer>,
    /// The statements of one step, in order.
    pub stmts: Vec<Stmt>,
    /// `(destination, source)` copies after the statements: staged values become committed.
    pub commits: Vec<(BufId, BufId)>,
    /// `(destination, source)` pairs committed by exchanging the two buffers after the
    /// statements and the copies (no values move): the destination takes the staged values,
    /// and the source, which only the statements see and which one of them rewrites whole
    /// before any reads it, is left holding the previous ones ([`Program::swappable`]).
    pub swaps: Vec<(BufId, BufId)>,
    /// Parameters the optimiser updates.
    pub learnables: Vec<Learnable>,
    /// Buffers of each population.
    pub populations: Vec<PopulationBuffers>,
    /// Buffer of each input.
    pub inputs: Vec<BufId>,
    /// Buffers of each projection: weights, bias.
    pub projections: Vec<(BufId, Option<BufId>)>,
    /// Derived dynamics of each neuron type.
    pub neurons: Vec<NeuronDynamics>,
    /// For learners: `(population, incoming error c, instantaneous error g)` expressions.
    pub errors: Vec<(usize, Id, Id)>,
    /// Output costs of the energy (for the loss metric).
    pub costs: Vec<CostTerm>,
    /// With `errors adjoint(…)`: what the runtime records and how it computes the gradients.
    pub adjoint: Option<AdjointPlan>,
}

struct Builder<'m> {
    model: &'m Model,
    g: Graph,
    buffers: Vec<Buffer>,
    stmts: Vec<Stmt>,
    commits: Vec<(BufId, BufId)>,
    learnables: Vec<Learnable>,
}

impl Builder<'_> {
    fn buf(&mut self, name: String, len: usize, layout: Layout, init: BufInit) -> BufId {
        self.buffers.push(Buffer {
            name,
            len,
            layout,
            init,
        });
        self.buffers.len() - 1
    }

    fn leaf(&mut self, b: BufId) -> Id {
        self.g.leaf(Leaf::Buf(b))
    }

    /// `input = term` for the first projection into a population, else `input += term`.
    fn add_to_input(&mut self, input: BufId, term: Id, first: bool, n: usize) {
        let value = if first {
            term
        } else {
            let il = self.leaf(input);
            self.g.add(il, term)
        };
        self.stmts.push(Stmt::Map {
            len: n,
            outs: vec![(input, value)],
        });
    }
}

/// Compiles a checked model into its step program.
pub fn compile(model: &Model) -> Result<Program, DeriveError> {
    let mut b = Builder {
        model,
        g: Graph::new(),
        buffers: Vec::new(),
        stmts: Vec::new(),
        commits: Vec::new(),
        learnables: Vec::new(),
    };
    let used: Vec<bool> = (0..model.neurons.len())
        .map(|n| model.populations.iter().any(|p| p.neuron == n))
        .collect();
    let mut neurons = Vec::new();
    for (n, &used) in used.iter().enumerate() {
        if used {
            neurons.push(derive_neuron(&mut b.g, model, n)?);
        } else {
            // Unused types still get derived when possible, for `explain`; failures are ignored.
            match derive_neuron(&mut b.g, model, n) {
                Ok(d) => neurons.push(d),
                Err(_) => {
                    let zero = b.g.num(0.0);
                    neurons.push(NeuronDynamics {
                        udot: zero,
                        mismatch: zero,
                        rate: zero,
                        slope: zero,
                        tau_r: None,
                        tau_m: zero,
                        dmismatch_dparam: Vec::new(),
                        filters: Vec::new(),
                        defs: Vec::new(),
                    })
                }
            }
        }
    }
    // The offline adjoint mode: local errors only, no errors sent down and no online gradients;
    // the runtime integrates λ backwards over each window (see `crate::adjoint`).
    let adjoint_window = match model.learning.errors {
        ErrorMode::Adjoint { window } => Some(window),
        _ => None,
    };
    if let (Some(_), Some(rule)) = (adjoint_window, model.rules.first()) {
        return Err(DeriveError::new(
            "explicit plasticity rules cannot be combined with `errors adjoint(…)`".into(),
            rule.span,
        ));
    }
    let mut adjoint_gradients: Vec<AdjointGradient> = Vec::new();

    // Inputs.
    let inputs: Vec<BufId> = model
        .inputs
        .iter()
        .enumerate()
        .map(|(i, inp)| b.buf(inp.name.clone(), inp.size, Layout::Batch, BufInit::Input(i)))
        .collect();

    // Population buffers.
    let mut pops: Vec<PopulationBuffers> = Vec::new();
    let mut staged: Vec<(BufId, BufId, BufId, BufId, BufId)> = Vec::new(); // u', uhat', r', slope', v'
    let mut slopes = Vec::new();
    let mut synaptic = Vec::new();
    let mut aux_bufs: Vec<Vec<(BufId, BufId)>> = Vec::new();
    let mut compartment_bufs: Vec<Vec<BufId>> = Vec::new();
    let mut noise_bufs: Vec<Option<BufId>> = Vec::new();
    for (p, pop) in model.populations.iter().enumerate() {
        let n = pop.size;
        let name = &pop.name;
        let nt = &model.neurons[pop.neuron];
        let params: Vec<BufId> = nt
            .params
            .iter()
            .enumerate()
            .map(|(i, q)| {
                b.buf(
                    format!("{name}.{}", q.name),
                    n,
                    Layout::Shared,
                    BufInit::NeuronParam { pop: p, param: i },
                )
            })
            .collect();
        let batch = |b: &mut Builder, what: &str| b.buf(format!("{name}.{what}"), n, Layout::Batch, BufInit::Zero);
        let u = batch(&mut b, "u");
        let uhat = batch(&mut b, "uhat");
        let r = batch(&mut b, "r");
        let slope = batch(&mut b, "slope");
        let udot = batch(&mut b, "udot");
        let input = batch(&mut b, "input");
        let learner = pop.role == Role::Learner;
        let (e, v) = if learner {
            let e = batch(&mut b, "e");
            let v = (model.learning.errors == ErrorMode::Prospective).then(|| batch(&mut b, "v"));
            (Some(e), v)
        } else {
            (None, None)
        };
        let u_next = batch(&mut b, "u'");
        let uhat_next = batch(&mut b, "uhat'");
        let r_next = batch(&mut b, "r'");
        let slope_next = batch(&mut b, "slope'");
        let v_next = match v {
            Some(_) => batch(&mut b, "v'"),
            None => usize::MAX,
        };
        let filters = neurons[pop.neuron].filters.len();
        let aux: Vec<(BufId, BufId)> = (0..filters)
            .map(|k| {
                (
                    batch(&mut b, &format!("filter{k}")),
                    batch(&mut b, &format!("filter{k}'")),
                )
            })
            .collect();
        aux_bufs.push(aux);
        staged.push((u_next, uhat_next, r_next, slope_next, v_next));
        slopes.push(slope);
        synaptic.push(input);
        let comps: Vec<BufId> = nt.compartments.iter().map(|c| batch(&mut b, &c.name)).collect();
        compartment_bufs.push(comps);
        let noisy = b.g.depends_on(neurons[pop.neuron].rate, &|l| l == Leaf::Noise);
        noise_bufs.push(noisy.then(|| b.buf(format!("{name}.noise"), n, Layout::Batch, BufInit::Noise)));
        pops.push(PopulationBuffers {
            u,
            uhat,
            r,
            udot,
            e,
            v,
            params,
        });
    }

    // Projection buffers.
    let mut proj_bufs: Vec<(BufId, Option<BufId>)> = Vec::new();
    let mut feedback: Vec<Option<BufId>> = Vec::new();
    for (k, pr) in model.projections.iter().enumerate() {
        let (rows, cols) = pr.shape;
        let (w, bias) = match &pr.connectivity {
            Connectivity::Dense { bias, .. } => {
                let w = b.buf(
                    format!("{}.W", pr.name),
                    rows * cols,
                    Layout::Shared,
                    BufInit::Weights(k),
                );
                let bias = bias
                    .as_ref()
                    .map(|_| b.buf(format!("{}.b", pr.name), rows, Layout::Shared, BufInit::Bias(k)));
                (w, bias)
            }
            Connectivity::Diagonal { .. } => (
                b.buf(format!("{}.W", pr.name), rows, Layout::Shared, BufInit::Weights(k)),
                None,
            ),
            Connectivity::Identity => (usize::MAX, None),
        };
        proj_bufs.push((w, bias));
        feedback.push(match pr.feedback {
            Feedback::Random(_) if matches!(pr.connectivity, Connectivity::Dense { .. }) => Some(b.buf(
                format!("{}.B", pr.name),
                rows * cols,
                Layout::Shared,
                BufInit::Feedback(k),
            )),
            _ => None,
        });
    }

    // Synaptic low-pass filters: the filtered presynaptic value each filtered projection sees.
    let synapse_bufs: Vec<Option<(BufId, f64)>> = model
        .projections
        .iter()
        .map(|pr| match pr.connectivity {
            Connectivity::Dense { synapse: Some(tau), .. } => Some((
                b.buf(format!("{}.rsyn", pr.name), pr.shape.1, Layout::Batch, BufInit::Zero),
                tau,
            )),
            _ => None,
        })
        .collect();

    // Errors sent down through each projection whose both ends learn: d = Wᵀ e_post.
    let mut down: Vec<Option<(BufId, BufId)>> = Vec::new();
    for pr in &model.projections {
        let pre_learns = matches!(pr.pre, Source::Population(p, _) if model.populations[p].role == Role::Learner);
        let post_learns = model.populations[pr.post].role == Role::Learner;
        down.push(if pre_learns && post_learns && adjoint_window.is_none() {
            let len = pr.shape.1;
            let d = b.buf(format!("{}.d", pr.name), len, Layout::Batch, BufInit::Zero);
            let dn = b.buf(format!("{}.d'", pr.name), len, Layout::Batch, BufInit::Zero);
            Some((d, dn))
        } else {
            None
        });
    }

    // The presynaptic buffer each projection reads (committed values; inputs are current).
    // The order populations are computed in, and what a projection reads: in the parallel
    // schedule every population reads values committed at the previous step; in the sequential
    // schedule populations are computed in dependency order and read this step's rates.
    let sequential = model.protocol.schedule == Schedule::Sequential;
    let integrator = model.protocol.integrator;
    let order = if sequential {
        topological_order(
            model,
            "the sequential schedule needs a network without loops; use `schedule parallel`",
        )?
    } else {
        (0..model.populations.len()).collect()
    };
    let pre_buf = |pr: &gle_ir::Projection| -> Result<BufId, DeriveError> {
        match pr.pre {
            Source::Input(i) => Ok(inputs[i]),
            Source::Population(p, var) => {
                let pb = &pops[p];
                let nt = &model.neurons[model.populations[p].neuron];
                let (_, uhat_next, r_next, _, _) = staged[p];
                match var {
                    NeuronVar::Def(d) if d == nt.rate => Ok(if sequential { r_next } else { pb.r }),
                    NeuronVar::State(_) => Ok(pb.u),
                    NeuronVar::Def(d) if defines_uhat(model, model.populations[p].neuron, d) => {
                        Ok(if sequential { uhat_next } else { pb.uhat })
                    }
                    _ => Err(DeriveError::new(
                        format!(
                            "projection `{}` reads a variable that is not compiled yet (use the rate, `u` or ŭ)",
                            pr.name
                        ),
                        pr.span,
                    )),
                }
            }
        }
    };

    // Costs: per-element energy density over committed buffers, differentiated per learner.
    // Output costs: elementwise terms form an energy density that is differentiated per learner;
    // softmax cross-entropy terms contribute β·(onehot − softmax(r)) directly.
    let mut costs = Costs {
        targets: Vec::new(),
        terms: Vec::new(),
        ce: Vec::new(),
    };
    let mut density = b.g.num(0.0);
    if let Some(e) = &model.energy {
        let mut terms = Vec::new();
        sum_terms(&e.value, false, &mut terms);
        for (term, negated) in terms {
            let part = cost_term(&mut b, term, &pops, &inputs, &mut costs, e.span)?;
            let part = if negated { b.g.neg(part) } else { part };
            density = b.g.add(density, part);
        }
    }

    let mut errors = Vec::new();
    // Pre-activations `W·a + b` of projections with a connectivity function.
    let mut pre_activation: Vec<Option<BufId>> = vec![None; model.projections.len()];
    for &p in &order {
        let pop = &model.populations[p];
        let n = pop.size;
        let nd = neurons[pop.neuron].clone();
        let pb = pops[p].clone();
        let (u_next, uhat_next, r_next, slope_next, v_next) = staged[p];
        let input = synaptic[p];

        // 1. Synaptic input I = Σ W a + b, per target: the soma's input or a compartment.
        let mut first_of: Vec<BufId> = Vec::new();
        for (k, pr) in model.projections.iter().enumerate().filter(|(_, pr)| pr.post == p) {
            let input = match pr.compartment {
                Some(c) => compartment_bufs[p][c],
                None => input,
            };
            let first = !first_of.contains(&input);
            first_of.push(input);
            let a = match synapse_bufs[k] {
                Some((syn, tau)) => {
                    // τ_s·ṙ_syn = r − r_syn, advanced before the projection reads it.
                    let pre = b.leaf(pre_buf(pr)?);
                    let tau = b.g.num(tau);
                    let val = low_pass_step(&mut b.g, integrator, syn, pre, tau);
                    b.stmts.push(Stmt::Map {
                        len: pr.shape.1,
                        outs: vec![(syn, val)],
                    });
                    syn
                }
                None => pre_buf(pr)?,
            };
            let (w, bias) = proj_bufs[k];
            let (rows, cols) = pr.shape;
            match &pr.connectivity {
                Connectivity::Dense { map: Some(f), .. } => {
                    // f(W·a + b): the pre-activation z is kept for the backward pass.
                    let z = b.buf(format!("{}.z", pr.name), rows, Layout::Batch, BufInit::Zero);
                    b.stmts.push(Stmt::MatVec {
                        out: z,
                        w,
                        rows,
                        cols,
                        x: a,
                        accumulate: false,
                    });
                    let zl = b.leaf(z);
                    let pre_act = match bias {
                        Some(bias) => {
                            let bl = b.leaf(bias);
                            b.g.add(zl, bl)
                        }
                        None => zl,
                    };
                    b.stmts.push(Stmt::Map {
                        len: rows,
                        outs: vec![(z, pre_act)],
                    });
                    let term = apply_callee(&mut b, *f, zl)?;
                    b.add_to_input(input, term, first, n);
                    pre_activation[k] = Some(z);
                }
                Connectivity::Dense { .. } => {
                    b.stmts.push(Stmt::MatVec {
                        out: input,
                        w,
                        rows,
                        cols,
                        x: a,
                        accumulate: !first,
                    });
                    if let Some(bias) = bias {
                        let (i, bb) = (b.leaf(input), b.leaf(bias));
                        let sum = b.g.add(i, bb);
                        b.stmts.push(Stmt::Map {
                            len: n,
                            outs: vec![(input, sum)],
                        });
                    }
                }
                Connectivity::Diagonal { .. } | Connectivity::Identity => {
                    let al = b.leaf(a);
                    let term = if let Connectivity::Diagonal { .. } = pr.connectivity {
                        let wl = b.leaf(w);
                        b.g.mul(wl, al)
                    } else {
                        al
                    };
                    b.add_to_input(input, term, first, n);
                }
            }
        }

        // Bindings of the neuron type's symbols to this population's buffers.
        let bind = |g: &mut Graph, l: Leaf, e: Option<BufId>| -> Option<Id> {
            Some(match l {
                Leaf::Param(i) => g.leaf(Leaf::Buf(pb.params[i])),
                Leaf::State(_) => g.leaf(Leaf::Buf(pb.u)),
                Leaf::Input => g.leaf(Leaf::Buf(input)),
                Leaf::Compartment(c) => g.leaf(Leaf::Buf(compartment_bufs[p][c])),
                Leaf::Aux(k) => g.leaf(Leaf::Buf(aux_bufs[p][k].0)),
                Leaf::Error => match e {
                    Some(e) => g.leaf(Leaf::Buf(e)),
                    None => g.num(0.0),
                },
                Leaf::Noise => g.leaf(Leaf::Buf(noise_bufs[p]?)),
                _ => return None,
            })
        };

        // 2. Errors of learners: c = Σ d + ε_r; g = φ'(ŭ)·c + ε_ŭ; error neuron.
        if let Some(e) = pb.e {
            let mut c = b.g.num(0.0);
            for (k, pr) in model.projections.iter().enumerate() {
                if let (Source::Population(q, _), Some((d, _))) = (pr.pre, down[k])
                    && q == p
                {
                    let dl = b.leaf(d);
                    c = b.g.add(c, dl);
                }
            }
            let one = b.g.num(1.0);
            let r_leaf = Leaf::Buf(pb.r);
            let uhat_leaf = Leaf::Buf(pb.uhat);
            let grads = b.g.grad(density, one, &[r_leaf, uhat_leaf]);
            let mut eps_r = b.g.neg(grads[0]);
            let eps_uhat = b.g.neg(grads[1]);
            for (pop_ce, coef, onehot, softmax) in costs.ce.clone() {
                if pop_ce == p {
                    let (t, sm) = (b.leaf(onehot), b.leaf(softmax));
                    let diff = b.g.sub(t, sm);
                    let term = b.g.mul(coef, diff);
                    eps_r = b.g.add(eps_r, term);
                }
            }
            c = b.g.add(c, eps_r);
            let slope = b.leaf(slopes[p]);
            let gi = b.g.mul(slope, c);
            let gi = b.g.add(gi, eps_uhat);
            errors.push((p, c, gi));
            let tau_m = b.g.subst(nd.tau_m, &mut |g, l| bind(g, l, None));
            match (model.learning.errors, pb.v) {
                (ErrorMode::Prospective, Some(v)) => {
                    let Some(tau_r) = nd.tau_r else {
                        return Err(DeriveError::new(
                            format!(
                                "population `{}` has no look-ahead τʳ (its rate reads u directly), so prospective errors are undefined; use `errors instantaneous`",
                                pop.name
                            ),
                            pop.span,
                        ));
                    };
                    let tau_r = b.g.subst(tau_r, &mut |g, l| bind(g, l, None));
                    let vl = b.leaf(v);
                    let diff = b.g.sub(gi, vl);
                    let nu = b.g.div(diff, tau_r);
                    let t = b.g.mul(tau_m, nu);
                    let e_val = b.g.add(vl, t);
                    let one = b.g.num(1.0);
                    let decay = b.g.grad(nu, one, &[Leaf::Buf(v)])[0];
                    let h = step_length(&mut b.g, integrator, decay);
                    let t2 = b.g.mul(h, nu);
                    let v_val = b.g.add(vl, t2);
                    b.stmts.push(Stmt::Map {
                        len: n,
                        outs: vec![(e, e_val), (v_next, v_val)],
                    });
                    b.commits.push((v, v_next));
                }
                _ => b.stmts.push(Stmt::Map {
                    len: n,
                    outs: vec![(e, gi)],
                }),
            }
        }

        // 3. Membrane, look-ahead and rate from the pre-step derivative.
        let mu = b.g.subst(nd.udot, &mut |g, l| bind(g, l, pb.e));
        let ul = b.leaf(pb.u);
        let one = b.g.num(1.0);
        let decay = b.g.grad(mu, one, &[Leaf::Buf(pb.u)])[0];
        let h = step_length(&mut b.g, integrator, decay);
        let step = b.g.mul(h, mu);
        let u_val = b.g.add(ul, step);
        let uhat_val = match nd.tau_r {
            Some(tau_r) => {
                let tau_r = b.g.subst(tau_r, &mut |g, l| bind(g, l, None));
                let t = b.g.mul(tau_r, mu);
                b.g.add(ul, t)
            }
            None => ul,
        };
        let r_val = b.g.subst(nd.rate, &mut |g, l| {
            if l == Leaf::Uhat {
                Some(uhat_val)
            } else {
                bind(g, l, None)
            }
        });
        let slope_val = b.g.subst(nd.slope, &mut |g, l| {
            if l == Leaf::Uhat {
                Some(uhat_val)
            } else {
                bind(g, l, None)
            }
        });
        let mut outs = vec![
            (pb.udot, mu),
            (u_next, u_val),
            (uhat_next, uhat_val),
            (r_next, r_val),
            (slope_next, slope_val),
        ];
        for (k, &(tau, x)) in nd.filters.iter().enumerate() {
            let (a, a_next) = aux_bufs[p][k];
            let tau = b.g.subst(tau, &mut |g, l| bind(g, l, pb.e));
            let x = b.g.subst(x, &mut |g, l| bind(g, l, pb.e));
            let val = low_pass_step(&mut b.g, integrator, a, x, tau);
            outs.push((a_next, val));
            b.commits.push((a, a_next));
        }
        b.stmts.push(Stmt::Map { len: n, outs });
        b.commits.extend([
            (pb.u, u_next),
            (pb.uhat, uhat_next),
            (pb.r, r_next),
            (slopes[p], slope_next),
        ]);

        // 4. Gradients and errors sent down.
        if let Some(e) = pb.e {
            for (k, pr) in model.projections.iter().enumerate().filter(|(_, pr)| pr.post == p) {
                let a = match synapse_bufs[k] {
                    Some((syn, _)) => syn,
                    None => pre_buf(pr)?,
                };
                let (w, bias) = proj_bufs[k];
                let (rows, cols) = pr.shape;
                if pr.compartment.is_some() {
                    return Err(DeriveError::new(
                        "projections into compartments of a population that receives errors are not derived yet".into(),
                        pr.span,
                    ));
                }
                // The error at the projection's output: e, or e ⊙ f'(z) through a connectivity
                // function f (its vector–Jacobian product, derived symbolically).
                let e = match (&pr.connectivity, pre_activation[k]) {
                    (Connectivity::Dense { map: Some(f), .. }, Some(z)) => {
                        let uhat = b.g.leaf(Leaf::Uhat);
                        let fz = apply_callee(&mut b, *f, uhat)?;
                        let one = b.g.num(1.0);
                        let df = b.g.grad(fz, one, &[Leaf::Uhat])[0];
                        let zl = b.leaf(z);
                        let df = b.g.subst(df, &mut |_, l| (l == Leaf::Uhat).then_some(zl));
                        let el = b.leaf(e);
                        let s = b.g.mul(el, df);
                        let sb = b.buf(format!("{}.delta", pr.name), rows, Layout::Batch, BufInit::Zero);
                        b.stmts.push(Stmt::Map {
                            len: rows,
                            outs: vec![(sb, s)],
                        });
                        sb
                    }
                    _ => e,
                };
                // The error sent down reads W before the gradient's statement, which a kernel may
                // turn into the SGD step of W in place (an absorbed update, `gle-jit`).
                if let Some((_, d_next)) = down[k] {
                    match pr.connectivity {
                        Connectivity::Dense { .. } => {
                            let w_fb = feedback[k].unwrap_or(w);
                            b.stmts.push(Stmt::MatTVec {
                                out: d_next,
                                w: w_fb,
                                rows,
                                cols,
                                x: e,
                            });
                        }
                        Connectivity::Diagonal { .. } => {
                            let (wl, el) = (b.leaf(w), b.leaf(e));
                            let prod = b.g.mul(wl, el);
                            b.stmts.push(Stmt::Map {
                                len: rows,
                                outs: vec![(d_next, prod)],
                            });
                        }
                        Connectivity::Identity => {
                            let el = b.leaf(e);
                            b.stmts.push(Stmt::Map {
                                len: rows,
                                outs: vec![(d_next, el)],
                            });
                        }
                    }
                    let (d, dn) = down[k].expect("checked above");
                    b.commits.push((d, dn));
                }
                let ruled = model.rules.iter().any(|r| r.projection == k);
                if let (Plasticity::Learn { lr_factor }, false) = (pr.plasticity, ruled) {
                    let len = match pr.connectivity {
                        Connectivity::Dense { .. } => rows * cols,
                        _ => rows,
                    };
                    let grad = b.buf(format!("{}.W.grad", pr.name), len, Layout::Shared, BufInit::Zero);
                    let bias_grad =
                        bias.map(|_| b.buf(format!("{}.b.grad", pr.name), rows, Layout::Shared, BufInit::Zero));
                    if adjoint_window.is_some() {
                        if pre_activation[k].is_some() {
                            return Err(DeriveError::new(
                                "a connectivity function (`map:`) cannot be learned with `errors adjoint(…)`".into(),
                                pr.span,
                            ));
                        }
                        adjoint_gradients.push(AdjointGradient {
                            post: p,
                            x: a,
                            grad,
                            bias_grad,
                            dense: matches!(pr.connectivity, Connectivity::Dense { .. }),
                            rows,
                            cols,
                        });
                    } else {
                        match pr.connectivity {
                            Connectivity::Dense { .. } => b.stmts.push(Stmt::Outer {
                                grad,
                                rows,
                                cols,
                                a: e,
                                x: a,
                                negate: true,
                            }),
                            _ => {
                                let tmp = b.buf(format!("{}.W.grad_rows", pr.name), rows, Layout::Batch, BufInit::Zero);
                                let (el, al) = (b.leaf(e), b.leaf(a));
                                let prod = b.g.mul(el, al);
                                b.stmts.push(Stmt::Map {
                                    len: rows,
                                    outs: vec![(tmp, prod)],
                                });
                                b.stmts.push(Stmt::Mean {
                                    grad,
                                    len: rows,
                                    x: tmp,
                                    negate: true,
                                });
                            }
                        }
                    }
                    b.learnables.push(Learnable {
                        name: format!("{}.W", pr.name),
                        param: w,
                        grad,
                        lr_factor,
                        clamp_min: None,
                        rule: None,
                    });
                    if let (Some(bias), Some(gb)) = (bias, bias_grad) {
                        if adjoint_window.is_none() {
                            b.stmts.push(Stmt::Mean {
                                grad: gb,
                                len: rows,
                                x: e,
                                negate: true,
                            });
                        }
                        b.learnables.push(Learnable {
                            name: format!("{}.b", pr.name),
                            param: bias,
                            grad: gb,
                            lr_factor,
                            clamp_min: None,
                            rule: None,
                        });
                    }
                }
            }
            // Learned neuron parameters: ∂E/∂θ = e · ∂M/∂θ at the pre-step state.
            for (i, pv) in pop.params.iter().enumerate() {
                if !pv.learn {
                    continue;
                }
                if adjoint_window.is_some() {
                    return Err(DeriveError::new(
                        "`errors adjoint(…)` learns projections only, not neuron parameters".into(),
                        pv.span,
                    ));
                }
                let dm = nd.dmismatch_dparam[i];
                let mul = b.leaf(pb.udot);
                let dm = b.g.subst(dm, &mut |g, l| {
                    if l == Leaf::StateDot(0) {
                        Some(mul)
                    } else {
                        bind(g, l, pb.e)
                    }
                });
                let tmp = b.buf(
                    format!("{}.{}.grad_rows", pop.name, model.neurons[pop.neuron].params[i].name),
                    n,
                    Layout::Batch,
                    BufInit::Zero,
                );
                let el = b.leaf(e);
                let prod = b.g.mul(el, dm);
                b.stmts.push(Stmt::Map {
                    len: n,
                    outs: vec![(tmp, prod)],
                });
                let grad = b.buf(
                    format!("{}.{}.grad", pop.name, model.neurons[pop.neuron].params[i].name),
                    n,
                    Layout::Shared,
                    BufInit::Zero,
                );
                b.stmts.push(Stmt::Mean {
                    grad,
                    len: n,
                    x: tmp,
                    negate: false,
                });
                let pname = &model.neurons[pop.neuron].params[i].name;
                let clamp_min = model
                    .learning
                    .clamps
                    .iter()
                    .find(|(name, _)| name == pname)
                    .map(|c| c.1);
                b.learnables.push(Learnable {
                    name: format!("{}.{pname}", pop.name),
                    param: pb.params[i],
                    grad,
                    lr_factor: pv.lr_factor,
                    clamp_min,
                    rule: None,
                });
            }
        }
    }
    // Explicit plasticity rules: dW = A(post) ⊗ B(pre), batch-averaged.
    for rule in &model.rules {
        let k = rule.projection;
        let pr = &model.projections[k];
        let (w, bias) = proj_bufs[k];
        let (rows, cols) = pr.shape;
        let post = pr.post;
        let pre = match synapse_bufs[k] {
            Some((syn, _)) => syn,
            None => pre_buf(pr)?,
        };
        let (_, uhat_next, r_next, _, _) = staged[post];
        let pb = pops[post].clone();
        let post_nt = &model.neurons[model.populations[post].neuron];
        let pre_side = match pr.pre {
            Source::Population(q, _) => Some(q),
            Source::Input(_) => None,
        };
        let mut leaf_of = |g: &mut Graph, r: Ref| -> Result<Id, DeriveError> {
            let unsupported = || {
                DeriveError::new(
                    format!("the rule of `{}` reads a quantity that is not compiled yet", pr.name),
                    rule.span,
                )
            };
            Ok(match r {
                Ref::Pre(None) => g.leaf(Leaf::Buf(pre)),
                Ref::Pre(Some(var)) => {
                    let q = pre_side.ok_or_else(unsupported)?;
                    g.leaf(Leaf::Buf(
                        var_buffer(model, &pops[q], &compartment_bufs[q], var).ok_or_else(unsupported)?,
                    ))
                }
                Ref::Post(var) => {
                    let buf = match var {
                        NeuronVar::Def(d) if d == post_nt.rate => r_next,
                        NeuronVar::Def(d) if defines_uhat(model, model.populations[post].neuron, d) => uhat_next,
                        other => var_buffer(model, &pb, &compartment_bufs[post], other).ok_or_else(unsupported)?,
                    };
                    g.leaf(Leaf::Buf(buf))
                }
                Ref::Const(i) => g.leaf(Leaf::Const(i)),
                Ref::Dt => g.leaf(Leaf::Dt),
                _ => return Err(unsupported()),
            })
        };
        let mut factors_of = |b: &mut Builder, e: &Expr| -> Result<(Id, Id), DeriveError> {
            let whole = elementwise_expr(b, e, "a rule", &mut leaf_of)?;
            split_outer(&mut b.g, whole, pre).ok_or_else(|| {
                DeriveError::new(
                    format!(
                        "the rule of `{}` must be a product of a postsynaptic and a presynaptic factor",
                        pr.name
                    ),
                    rule.span,
                )
            })
        };
        if let Some(dw) = &rule.weight {
            let (post_factor, pre_factor) = factors_of(&mut b, dw)?;
            let a = b.buf(format!("{}.rule_post", pr.name), rows, Layout::Batch, BufInit::Zero);
            b.stmts.push(Stmt::Map {
                len: rows,
                outs: vec![(a, post_factor)],
            });
            let x = if b.g.node(pre_factor) == &crate::sym::Node::Leaf(Leaf::Buf(pre)) {
                pre
            } else {
                let x = b.buf(format!("{}.rule_pre", pr.name), cols, Layout::Batch, BufInit::Zero);
                b.stmts.push(Stmt::Map {
                    len: cols,
                    outs: vec![(x, pre_factor)],
                });
                x
            };
            let grad = b.buf(
                format!("{}.W.rule", pr.name),
                rows * cols,
                Layout::Shared,
                BufInit::Zero,
            );
            b.stmts.push(Stmt::Outer {
                grad,
                rows,
                cols,
                a,
                x,
                negate: false,
            });
            b.learnables.push(Learnable {
                name: format!("{}.W", pr.name),
                param: w,
                grad,
                lr_factor: 1.0,
                clamp_min: None,
                rule: Some(RuleStep {
                    lr: rule.lr,
                    lr_const: rule.lr_const,
                    clip: rule.clip,
                }),
            });
        }
        if let (Some(db), Some(bias)) = (&rule.bias, bias) {
            let value = elementwise_expr(&mut b, db, "a rule", &mut leaf_of)?;
            let tmp = b.buf(format!("{}.rule_bias", pr.name), rows, Layout::Batch, BufInit::Zero);
            b.stmts.push(Stmt::Map {
                len: rows,
                outs: vec![(tmp, value)],
            });
            let grad = b.buf(format!("{}.b.rule", pr.name), rows, Layout::Shared, BufInit::Zero);
            b.stmts.push(Stmt::Mean {
                grad,
                len: rows,
                x: tmp,
                negate: false,
            });
            b.learnables.push(Learnable {
                name: format!("{}.b", pr.name),
                param: bias,
                grad,
                lr_factor: 1.0,
                clamp_min: None,
                rule: Some(RuleStep {
                    lr: rule.lr,
                    lr_const: rule.lr_const,
                    clip: None,
                }),
            });
        }
    }
    let adjoint = match adjoint_window {
        Some(window) => Some(adjoint_plan(
            model,
            window,
            &pops,
            &slopes,
            &neurons,
            &b.g,
            &proj_bufs,
            &feedback,
            adjoint_gradients,
        )?),
        None => None,
    };
    let mut program = Program {
        adjoint,
        graph: b.g,
        buffers: b.buffers,
        stmts: b.stmts,
        commits: b.commits,
        swaps: Vec::new(),
        learnables: b.learnables,
        populations: pops,
        inputs,
        projections: proj_bufs,
        neurons,
        errors,
        costs: costs.terms,
    };
    let (swaps, copies) = program.commits.iter().partition(|&&c| program.swappable(c));
    program.swaps = swaps;
    program.commits = copies;
    Ok(program)
}

impl Program {
    /// The buffers checked for NaN and Inf after every step: each population's `u`, `r` and,
    /// for learners, `e`.
    pub fn watched(&self) -> Vec<BufId> {
        self.populations
            .iter()
            .flat_map(|p| [p.u, p.r].into_iter().chain(p.e))
            .collect()
    }

    /// The buffers a statement reads and those it writes.
    pub fn reads_and_writes(&self, stmt: &Stmt) -> (Vec<BufId>, Vec<BufId>) {
        match stmt {
            Stmt::Map { outs, .. } => {
                let writes = outs.iter().map(|o| o.0).collect();
                let mut reads = Vec::new();
                for (_, id) in outs {
                    for leaf in self.graph.leaves(*id) {
                        if let Leaf::Buf(b) = leaf {
                            reads.push(b);
                        }
                    }
                }
                (reads, writes)
            }
            &Stmt::MatVec {
                out, w, x, accumulate, ..
            } => {
                let mut reads = vec![w, x];
                if accumulate {
                    reads.push(out);
                }
                (reads, vec![out])
            }
            &Stmt::MatTVec { out, w, x, .. } => (vec![w, x], vec![out]),
            &Stmt::Softmax { out, x, .. } => (vec![x], vec![out]),
            &Stmt::Outer { grad, a, x, .. } => (vec![a, x], vec![grad]),
            &Stmt::Mean { grad, x, .. } => (vec![x], vec![grad]),
        }
    }

    /// Whether the commit `(dst, src)` may exchange the two buffers instead of copying: they
    /// have the same shape; `src` is a staging buffer nothing outside the statements reads
    /// (no population variable, parameter, gradient, input, cost or adjoint record) and no
    /// other commit touches; and one statement that runs in every step (not a gradient)
    /// writes all of `src` before any statement reads it. The previous values a swap leaves
    /// in `src` are then never seen.
    pub fn swappable(&self, (dst, src): (BufId, BufId)) -> bool {
        let (d, s) = (&self.buffers[dst], &self.buffers[src]);
        if d.len != s.len || d.layout != s.layout || s.init != BufInit::Zero {
            return false;
        }
        let mut visible: Vec<BufId> = self.inputs.clone();
        for p in &self.populations {
            visible.extend([p.u, p.uhat, p.r, p.udot].into_iter().chain(p.e).chain(p.v));
            visible.extend(&p.params);
        }
        for l in &self.learnables {
            visible.extend([l.param, l.grad]);
        }
        for c in &self.costs {
            visible.extend([c.prediction, c.target]);
        }
        for (w, bias) in &self.projections {
            visible.extend(std::iter::once(*w).chain(*bias));
        }
        if let Some(plan) = &self.adjoint {
            visible.extend(plan.recorded());
        }
        let mut other_commits = self.commits.iter().filter(|&&c| c != (dst, src));
        if visible.contains(&src) || other_commits.any(|&(a, b)| a == src || b == src || a == dst || b == dst) {
            return false;
        }
        for stmt in &self.stmts {
            let (reads, writes) = self.reads_and_writes(stmt);
            if reads.contains(&src) {
                return false;
            }
            if writes.contains(&src) {
                return !stmt.computes_gradient() && self.writes_whole(stmt, src);
            }
        }
        false
    }

    /// Whether `stmt` writes every element of buffer `b` (one of its outputs).
    fn writes_whole(&self, stmt: &Stmt, b: BufId) -> bool {
        let len = self.buffers[b].len;
        match *stmt {
            Stmt::Map { len: n, .. } => n == len,
            Stmt::MatVec { rows, .. } => rows == len,
            Stmt::MatTVec { cols, .. } => cols == len,
            Stmt::Softmax { len: n, .. } => n == len,
            Stmt::Outer { rows, cols, .. } => rows * cols == len,
            Stmt::Mean { len: n, .. } => n == len,
        }
    }
}

/// The backward pass of the adjoint error mode: learners top-down, the projections between
/// them, and the learned projections' gradients (`post` given as a population index).
#[allow(clippy::too_many_arguments)]
fn adjoint_plan(
    model: &Model,
    window: usize,
    pops: &[PopulationBuffers],
    slopes: &[BufId],
    neurons: &[NeuronDynamics],
    g: &Graph,
    proj_bufs: &[(BufId, Option<BufId>)],
    feedback: &[Option<BufId>],
    gradients: Vec<AdjointGradient>,
) -> Result<AdjointPlan, DeriveError> {
    let order = topological_order(model, "`errors adjoint(…)` needs a network without loops")?;
    let learners: Vec<usize> = order.into_iter().rev().filter(|&p| pops[p].e.is_some()).collect();
    let index = |p: usize| learners.iter().position(|&q| q == p).expect("a learner");
    let mut populations = Vec::new();
    for &p in &learners {
        let pop = &model.populations[p];
        let nd = &neurons[pop.neuron];
        let tau = |id: Option<Id>| -> Result<Tau, DeriveError> {
            let Some(id) = id else { return Ok(Tau::Num(0.0)) };
            match (g.node(id), g.as_num(id)) {
                (_, Some(v)) => Ok(Tau::Num(v)),
                (crate::sym::Node::Leaf(Leaf::Param(i)), _) => Ok(Tau::Param(pops[p].params[*i])),
                _ => Err(DeriveError::new(
                    format!(
                        "`errors adjoint(…)` needs the time constants of `{}` to be parameters or numbers",
                        pop.name
                    ),
                    pop.span,
                )),
            }
        };
        populations.push(AdjointPopulation {
            population: p,
            len: pop.size,
            local_error: pops[p].e.expect("a learner"),
            slope: slopes[p],
            tau_m: tau(Some(nd.tau_m))?,
            tau_r: tau(nd.tau_r)?,
        });
    }
    let mut links = Vec::new();
    for (k, pr) in model.projections.iter().enumerate() {
        let Source::Population(q, _) = pr.pre else { continue };
        if pops[q].e.is_none() || pops[pr.post].e.is_none() {
            continue;
        }
        let map = match pr.connectivity {
            Connectivity::Dense { map: Some(_), .. } => {
                return Err(DeriveError::new(
                    "a connectivity function (`map:`) between learners is not supported with `errors adjoint(…)`"
                        .into(),
                    pr.span,
                ));
            }
            Connectivity::Dense { .. } => AdjointMap::Dense {
                w: feedback[k].unwrap_or(proj_bufs[k].0),
            },
            Connectivity::Diagonal { .. } => AdjointMap::Diagonal { w: proj_bufs[k].0 },
            Connectivity::Identity => AdjointMap::Identity,
        };
        links.push(AdjointLink {
            pre: index(q),
            post: index(pr.post),
            map,
            rows: pr.shape.0,
            cols: pr.shape.1,
        });
    }
    let gradients = gradients
        .into_iter()
        .map(|grad| AdjointGradient {
            post: index(grad.post),
            ..grad
        })
        .collect();
    Ok(AdjointPlan {
        window,
        populations,
        links,
        gradients,
    })
}

/// Output costs found while reading the energy.
struct Costs {
    /// Target buffers made for dataset fields: `(dataset, field, width, buffer)`.
    targets: Vec<(usize, usize, usize, BufId)>,
    /// Cost terms, for the loss metric.
    terms: Vec<CostTerm>,
    /// Cross-entropy contributions: `(population, coefficient, one-hot target, softmax)`.
    ce: Vec<(usize, Id, BufId, BufId)>,
}

/// Splits a sum into its terms, with their signs.
fn sum_terms<'e>(e: &'e Expr, negated: bool, out: &mut Vec<(&'e Expr, bool)>) {
    match e {
        Expr::Binary(BinOp::Add, a, c) => {
            sum_terms(a, negated, out);
            sum_terms(c, negated, out);
        }
        Expr::Binary(BinOp::Sub, a, c) => {
            sum_terms(a, negated, out);
            sum_terms(c, !negated, out);
        }
        other => out.push((other, negated)),
    }
}

/// One additive term of the energy: a cross-entropy (with a constant coefficient) is recorded in
/// `costs` and contributes 0 to the density; other terms become elementwise density.
fn cost_term(
    b: &mut Builder,
    term: &Expr,
    pops: &[PopulationBuffers],
    inputs: &[BufId],
    costs: &mut Costs,
    span: gle_syntax::Span,
) -> Result<Id, DeriveError> {
    let mut factors = Vec::new();
    product_factors(term, &mut factors);
    let ce = factors
        .iter()
        .position(|f| matches!(f, Expr::Call(Callee::Builtin(Builtin::CrossEntropy), _)));
    let Some(k) = ce else {
        return cost_density(b, term, pops, inputs, costs, span, None);
    };
    let Expr::Call(_, args) = factors[k] else {
        unreachable!("matched above")
    };
    let Expr::Ref(Ref::PopVar(p, var)) = &args[0] else {
        return Err(DeriveError::new(
            "`cross_entropy` takes a population's rate as logits".into(),
            span,
        ));
    };
    let nt = &b.model.neurons[b.model.populations[*p].neuron];
    if *var != NeuronVar::Def(nt.rate) {
        return Err(DeriveError::new(
            "`cross_entropy` takes a population's rate as logits".into(),
            span,
        ));
    }
    let len = b.model.populations[*p].size;
    let mut coef = b.g.num(1.0);
    for (i, f) in factors.iter().enumerate() {
        if i != k {
            let c = cost_density(b, f, pops, inputs, costs, span, Some(len))?;
            if b.g.depends_on(c, &|l| matches!(l, Leaf::Buf(_))) {
                return Err(DeriveError::new(
                    "a cross-entropy may only be scaled by constants".into(),
                    span,
                ));
            }
            coef = b.g.mul(coef, c);
        }
    }
    let target = cost_density(b, &args[1], pops, inputs, costs, span, Some(len))?;
    let Some(&Leaf::Buf(target)) =
        b.g.leaves(target)
            .first()
            .filter(|_| matches!(b.g.node(target), crate::sym::Node::Leaf(_)))
    else {
        return Err(DeriveError::new(
            "`cross_entropy` needs labels from a dataset field or a vector".into(),
            span,
        ));
    };
    let logits = pops[*p].r;
    let softmax = b.buf(
        format!("{}.softmax", b.model.populations[*p].name),
        len,
        Layout::Batch,
        BufInit::Zero,
    );
    b.stmts.push(Stmt::Softmax {
        out: softmax,
        x: logits,
        len,
    });
    costs.ce.push((*p, coef, target, softmax));
    costs.terms.push(CostTerm {
        kind: CostKind::CrossEntropy,
        prediction: logits,
        target,
        len,
    });
    Ok(b.g.num(0.0))
}

fn product_factors<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Binary(BinOp::Mul, a, c) => {
            product_factors(a, out);
            product_factors(c, out);
        }
        other => out.push(other),
    }
}

/// The per-element energy density of the cost terms (mismatch terms excluded: their
/// contribution is the structural `Σ Wᵀ e`), over committed buffers.
#[allow(clippy::too_many_arguments)]
fn cost_density(
    b: &mut Builder,
    e: &Expr,
    pops: &[PopulationBuffers],
    inputs: &[BufId],
    costs: &mut Costs,
    span: gle_syntax::Span,
    width: Option<usize>,
) -> Result<Id, DeriveError> {
    let unsupported = |what: &str| DeriveError::new(format!("the energy uses {what}, which is not compiled yet"), span);
    Ok(match e {
        Expr::Num(v) => b.g.num(*v),
        Expr::Ref(Ref::Const(i)) => b.g.leaf(Leaf::Const(*i)),
        Expr::Ref(Ref::Dt) => b.g.leaf(Leaf::Dt),
        Expr::Ref(Ref::Input(i)) => b.leaf(inputs[*i]),
        Expr::Ref(Ref::DataField(d, f)) => {
            let Some(width) = width else {
                return Err(unsupported("a dataset field outside `mse`/`cross_entropy`"));
            };
            let buf = match costs.targets.iter().find(|t| (t.0, t.1, t.2) == (*d, *f, width)) {
                Some(t) => t.3,
                None => {
                    let name = format!(
                        "{}.{}[{width}]",
                        b.model.datasets[*d].name, b.model.datasets[*d].fields[*f].name
                    );
                    let buf = b.buf(
                        name,
                        width,
                        Layout::Batch,
                        BufInit::DataTarget { dataset: *d, field: *f },
                    );
                    costs.targets.push((*d, *f, width, buf));
                    buf
                }
            };
            b.leaf(buf)
        }
        Expr::Ref(Ref::PopVar(p, var)) => {
            let pop = &b.model.populations[*p];
            let nt = &b.model.neurons[pop.neuron];
            let pb = &pops[*p];
            let buf = match var {
                NeuronVar::Def(d) if *d == nt.rate => pb.r,
                NeuronVar::State(_) => pb.u,
                NeuronVar::Def(d) if nt.defs[*d].kind == DefKind::Let && defines_uhat(b.model, pop.neuron, *d) => {
                    pb.uhat
                }
                _ => return Err(unsupported("a population variable other than its rate, `u` or ŭ")),
            };
            b.leaf(buf)
        }
        Expr::Neg(a) => {
            let a = cost_density(b, a, pops, inputs, costs, span, width)?;
            b.g.neg(a)
        }
        Expr::Binary(op, x, y) => {
            let x = cost_density(b, x, pops, inputs, costs, span, width)?;
            let y = cost_density(b, y, pops, inputs, costs, span, width)?;
            match op {
                BinOp::Add => b.g.add(x, y),
                BinOp::Sub => b.g.sub(x, y),
                BinOp::Mul => b.g.mul(x, y),
                BinOp::Div => b.g.div(x, y),
                BinOp::Pow => b.g.pow(x, y),
            }
        }
        Expr::Call(Callee::Builtin(Builtin::Mismatch), _) => b.g.num(0.0),
        Expr::Call(Callee::Builtin(Builtin::Sum), args) => cost_density(b, &args[0], pops, inputs, costs, span, width)?,
        Expr::Call(Callee::Builtin(Builtin::Mse), args) => {
            let x = cost_density(b, &args[0], pops, inputs, costs, span, width)?;
            let len = pred_width(b.model, &args[0]);
            let y = cost_density(b, &args[1], pops, inputs, costs, span, len.or(width))?;
            if let (Some(len), crate::sym::Node::Leaf(Leaf::Buf(pb)), crate::sym::Node::Leaf(Leaf::Buf(tb))) =
                (len, b.g.node(x).clone(), b.g.node(y).clone())
            {
                costs.terms.push(CostTerm {
                    kind: CostKind::Mse,
                    prediction: pb,
                    target: tb,
                    len,
                });
            }
            let d = b.g.sub(x, y);
            let two = b.g.num(2.0);
            let sq = b.g.pow(d, two);
            let half = b.g.num(0.5);
            b.g.mul(half, sq)
        }
        Expr::Call(Callee::Builtin(f), args) if f.is_elementwise() => {
            let xs = args
                .iter()
                .map(|a| cost_density(b, a, pops, inputs, costs, span, width))
                .collect::<Result<Vec<_>, _>>()?;
            b.g.call(Fun::B(*f), xs)
        }
        Expr::Call(Callee::Builtin(Builtin::CrossEntropy), _) => {
            return Err(unsupported("`cross_entropy` inside another expression"));
        }
        Expr::Call(Callee::Builtin(Builtin::Lowpass), args) => {
            let x = cost_density(b, &args[0], pops, inputs, costs, span, width)?;
            let (Expr::Num(tau), Some(len), crate::sym::Node::Leaf(Leaf::Buf(src))) =
                (&args[1], width, b.g.node(x).clone())
            else {
                return Err(unsupported("`lowpass` of something other than the target of `mse`"));
            };
            if *tau == 0.0 {
                return Ok(x);
            }
            // τ·ẏ = x − y, advanced before the errors read the target.
            let y = b.buf(
                format!("lowpass({})", b.buffers[src].name),
                len,
                Layout::Batch,
                BufInit::Zero,
            );
            let tau = b.g.num(*tau);
            let val = low_pass_step(&mut b.g, b.model.protocol.integrator, y, x, tau);
            b.stmts.push(Stmt::Map {
                len,
                outs: vec![(y, val)],
            });
            b.leaf(y)
        }
        Expr::Call(Callee::User(f), args) => {
            let xs = args
                .iter()
                .map(|a| cost_density(b, a, pops, inputs, costs, span, width))
                .collect::<Result<Vec<_>, _>>()?;
            let body = b.model.functions[*f].body.clone();
            let inlined = inline_args(&body, &xs, b);
            inlined?
        }
        _ => return Err(unsupported("this kind of term")),
    })
}

/// A user function's body with its parameters bound to already-converted arguments.
fn inline_args(body: &Expr, args: &[Id], b: &mut Builder) -> Result<Id, DeriveError> {
    const WHAT: &str = "a user function in the energy";
    elementwise_expr(b, body, WHAT, &mut |g, r| match r {
        Ref::Arg(i) => Ok(args[i]),
        Ref::Const(i) => Ok(g.leaf(Leaf::Const(i))),
        _ => Err(not_elementwise(WHAT)),
    })
}

/// The value after one step of the first-order low-pass `τ·ẏ = x − y` of buffer `y` (filters
/// `I[τ]`, synaptic filters, `lowpass` targets).
fn low_pass_step(g: &mut Graph, integrator: Integrator, y: BufId, x: Id, tau: Id) -> Id {
    let yl = g.leaf(Leaf::Buf(y));
    let diff = g.sub(x, yl);
    let rate = g.div(diff, tau);
    let one = g.num(1.0);
    let decay = g.grad(rate, one, &[Leaf::Buf(y)])[0];
    let h = step_length(g, integrator, decay);
    let t = g.mul(h, rate);
    g.add(yl, t)
}

/// How far one step advances a state `x` with `ẋ = f`: `dt` (forward Euler) or, for the
/// exponential integrator, `(e^{λ dt} − 1)/λ` with `λ = ∂f/∂x` (exact for linear dynamics with
/// inputs held over the step; `dt` again where λ = 0).
fn step_length(g: &mut Graph, integrator: Integrator, decay: Id) -> Id {
    let dt = g.leaf(Leaf::Dt);
    if integrator == Integrator::Euler || g.as_num(decay) == Some(0.0) {
        return dt;
    }
    let x = g.mul(decay, dt);
    let e = g.call(Fun::B(Builtin::Exp), vec![x]);
    let one = g.num(1.0);
    let em1 = g.sub(e, one);
    g.div(em1, decay)
}

/// Populations in dependency order along projections (for the sequential schedule).
fn topological_order(model: &Model, message: &str) -> Result<Vec<usize>, DeriveError> {
    let n = model.populations.len();
    let mut indegree = vec![0usize; n];
    for pr in &model.projections {
        if let Source::Population(q, _) = pr.pre
            && q != pr.post
        {
            indegree[pr.post] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|p| indegree[*p] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(p) = ready.first().copied() {
        ready.remove(0);
        order.push(p);
        for pr in &model.projections {
            if let Source::Population(q, _) = pr.pre
                && q == p
                && pr.post != p
            {
                indegree[pr.post] -= 1;
                if indegree[pr.post] == 0 {
                    ready.push(pr.post);
                }
            }
        }
    }
    if order.len() < n
        || model
            .projections
            .iter()
            .any(|pr| matches!(pr.pre, Source::Population(q, _) if q == pr.post))
    {
        let span = model
            .populations
            .first()
            .map_or(gle_syntax::Span::default(), |p| p.span);
        return Err(DeriveError::new(message.into(), span));
    }
    Ok(order)
}

/// `f(x)` for a built-in or user function of one argument.
fn apply_callee(b: &mut Builder, f: Callee, x: Id) -> Result<Id, DeriveError> {
    match f {
        Callee::Builtin(bi) => Ok(b.g.call(Fun::B(bi), vec![x])),
        Callee::User(i) => {
            let body = b.model.functions[i].body.clone();
            inline_args(&body, &[x], b)
        }
    }
}

/// The committed buffer of a population variable: state, parameter, compartment, rate or ŭ.
fn var_buffer(model: &Model, pb: &PopulationBuffers, comps: &[BufId], var: NeuronVar) -> Option<BufId> {
    let _ = model;
    match var {
        NeuronVar::State(_) => Some(pb.u),
        NeuronVar::Param(i) => Some(pb.params[i]),
        NeuronVar::Compartment(c) => comps.get(c).copied(),
        NeuronVar::Def(_) => None,
    }
}

/// The error for an expression that is not arithmetic over elementwise built-ins.
fn not_elementwise(what: &str) -> DeriveError {
    DeriveError::new(
        format!("{what} uses something other than arithmetic and elementwise built-ins"),
        gle_syntax::Span::default(),
    )
}

/// Converts arithmetic over elementwise built-ins and user functions (a rule, a user function's
/// body; `what` names it in errors), with `leaf` binding its references.
fn elementwise_expr(
    b: &mut Builder,
    e: &Expr,
    what: &str,
    leaf: &mut dyn FnMut(&mut Graph, Ref) -> Result<Id, DeriveError>,
) -> Result<Id, DeriveError> {
    Ok(match e {
        Expr::Num(v) => b.g.num(*v),
        Expr::Ref(r) => leaf(&mut b.g, *r)?,
        Expr::Neg(a) => {
            let a = elementwise_expr(b, a, what, leaf)?;
            b.g.neg(a)
        }
        Expr::Binary(op, x, y) => {
            let (x, y) = (elementwise_expr(b, x, what, leaf)?, elementwise_expr(b, y, what, leaf)?);
            match op {
                BinOp::Add => b.g.add(x, y),
                BinOp::Sub => b.g.sub(x, y),
                BinOp::Mul => b.g.mul(x, y),
                BinOp::Div => b.g.div(x, y),
                BinOp::Pow => b.g.pow(x, y),
            }
        }
        Expr::Call(Callee::Builtin(f), xs) if f.is_elementwise() => {
            let xs = xs
                .iter()
                .map(|x| elementwise_expr(b, x, what, leaf))
                .collect::<Result<Vec<_>, _>>()?;
            b.g.call(Fun::B(*f), xs)
        }
        Expr::Call(Callee::User(f), xs) => {
            let xs = xs
                .iter()
                .map(|x| elementwise_expr(b, x, what, leaf))
                .collect::<Result<Vec<_>, _>>()?;
            let body = b.model.functions[*f].body.clone();
            inline_args(&body, &xs, b)?
        }
        _ => return Err(not_elementwise(what)),
    })
}

/// Splits `e` into (postsynaptic factor, presynaptic factor): the multiplicative factors of `e`
/// that read the presynaptic buffer `pre` form the second, all others the first. `None` if a
/// factor reads both sides.
fn split_outer(g: &mut Graph, e: Id, pre: BufId) -> Option<(Id, Id)> {
    let mut factors = Vec::new();
    let mut sign = false;
    let mut stack = vec![e];
    while let Some(id) = stack.pop() {
        match g.node(id).clone() {
            crate::sym::Node::Mul(a, c) => stack.extend([a, c]),
            crate::sym::Node::Neg(a) => {
                sign = !sign;
                stack.push(a);
            }
            _ => factors.push(id),
        }
    }
    let reads_pre = |g: &Graph, id: Id| g.depends_on(id, &|l| l == Leaf::Buf(pre));
    let (mut post, mut pre_f) = (g.num(if sign { -1.0 } else { 1.0 }), g.num(1.0));
    for f in factors {
        if reads_pre(g, f) {
            if g.depends_on(f, &|l| matches!(l, Leaf::Buf(b) if b != pre)) {
                return None;
            }
            pre_f = g.mul(pre_f, f);
        } else {
            post = g.mul(post, f);
        }
    }
    Some((post, pre_f))
}

/// The size of the population a prediction reads.
fn pred_width(model: &Model, e: &Expr) -> Option<usize> {
    match e {
        Expr::Ref(Ref::PopVar(p, _)) => Some(model.populations[*p].size),
        Expr::Ref(Ref::Input(i)) => Some(model.inputs[*i].size),
        _ => None,
    }
}

/// Whether definition `d` of neuron type `n` is exactly `D[τʳ] u`, the rate's look-ahead.
fn defines_uhat(model: &Model, n: usize, d: usize) -> bool {
    let nt = &model.neurons[n];
    matches!(&nt.defs[d].value, Expr::D(_, x) if matches!(**x, Expr::Ref(Ref::Own(NeuronVar::State(_)))))
}

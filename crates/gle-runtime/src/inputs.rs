//! Input sources: functions of time with seeded random draws, Gaussian smoothing, and recorded
//! streams from `.npy` files.

use crate::RunError;
use crate::npy;
use crate::rng::Rng;
use gle_ir::builtins::Builtin;
use gle_ir::{BinOp, Callee, Expr, Input, Model, Ref};
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

/// Steps of a smoothed input prepared at once, as the run reaches them.
const SMOOTHED_BLOCK: usize = 1024;

/// One input, ready to fill its buffer at any step.
pub enum InputStream {
    /// Evaluated every step: `expr(t)` per batch row and channel, with the random draws fixed at
    /// the start of the run (`draws[site][row * width + channel]`).
    Function {
        /// The source expression.
        expr: Expr,
        /// Drawn values per random call site.
        draws: Vec<Vec<f64>>,
        /// Channels.
        width: usize,
        /// Batch rows.
        batch: usize,
    },
    /// A dataset field presented by the running data phase.
    Data {
        /// Dataset index.
        dataset: usize,
        /// Field index.
        field: usize,
        /// Channels.
        width: usize,
    },
    /// A function of time smoothed along time (`smooth(f, sigma_steps: σ)`), prepared block by
    /// block as the run reaches it (so the first step does not wait for the whole run's).
    Smoothed {
        /// The function smoothed (a [`InputStream::Function`]).
        inner: Box<InputStream>,
        /// The constants at the start of the run, which the function sees.
        consts: Vec<f64>,
        /// The time step.
        dt: f64,
        /// The kernel's width in steps.
        sigma: f64,
        /// Steps of the whole series (it is reflected at its ends).
        steps: usize,
        /// Channels times batch rows per step.
        row: usize,
        /// Name for errors.
        name: String,
        /// The block prepared last: its first step and its values.
        block: Mutex<(usize, Vec<f64>)>,
    },
    /// Ornstein–Uhlenbeck noise (`ou(tau: τ, sigma: σ)`), advanced as the run reaches each step.
    Ou {
        /// The time step.
        dt: f64,
        /// The time constant τ.
        tau: f64,
        /// The noise's weight per step, `σ·√(2·dt/τ)`.
        kick: f64,
        /// Steps available.
        steps: usize,
        /// Name for errors.
        name: String,
        /// The generator at step 0 (to start again when an earlier step is asked for).
        start: Rng,
        /// The process at a step: the step, its values (every batch row and channel), and the
        /// generator's state there.
        state: Mutex<(usize, Vec<f64>, Rng)>,
    },
    /// Precomputed values, `steps × batch × width`.
    Table {
        /// Values.
        data: Vec<f64>,
        /// Steps available.
        steps: usize,
        /// Channels times batch rows per step.
        row: usize,
        /// Name for errors.
        name: String,
    },
}

impl InputStream {
    /// Prepares input `inp` for `steps` steps.
    pub fn new(
        inp: &Input,
        model: &Model,
        batch: usize,
        steps: usize,
        seed: u64,
        base: &Path,
        datasets: &[crate::data::LoadedDataset],
    ) -> Result<Self, RunError> {
        let width = inp.size;
        let consts: Vec<f64> = model.consts.iter().map(|c| c.value).collect();
        let dt = model.protocol.dt;
        match &inp.source {
            Expr::Ref(Ref::DataField(d, f)) => {
                let ds = &datasets[*d];
                let fd = &ds.train[*f];
                let ok = match ds.decl.present {
                    gle_ir::Presentation::Hold => fd.per_row == width,
                    gle_ir::Presentation::Stream => fd.per_row.is_multiple_of(width),
                };
                if !ok || fd.labels {
                    return Err(RunError::at(
                        format!(
                            "input `{}` has {width} channels, but the samples of field `{}` of `{}` have {} values{}",
                            inp.name,
                            ds.decl.fields[*f].name,
                            ds.decl.name,
                            fd.per_row,
                            if fd.labels { " (class labels)" } else { "" }
                        ),
                        inp.span,
                    ));
                }
                Ok(InputStream::Data {
                    dataset: *d,
                    field: *f,
                    width,
                })
            }
            Expr::Call(Callee::Builtin(Builtin::Npy), args) => {
                let Some(Expr::Str(file)) = args.first() else {
                    return Err(RunError::at("`npy` takes a file name", inp.span));
                };
                let path = base.join(file);
                let a = npy::read(&path).map_err(|e| RunError::at(e, inp.span))?;
                let row = batch * width;
                let per_step: usize = a.shape.iter().skip(1).product();
                if a.shape.is_empty() || per_step != row {
                    return Err(RunError::at(
                        format!(
                            "`{}` has shape {:?}, but input `{}` needs (steps, {batch}) or (steps, {batch}, {width})",
                            path.display(),
                            a.shape,
                            inp.name
                        ),
                        inp.span,
                    ));
                }
                if a.shape[0] < steps {
                    return Err(RunError::at(
                        format!(
                            "`{}` holds {} steps, but the run needs {steps}",
                            path.display(),
                            a.shape[0]
                        ),
                        inp.span,
                    ));
                }
                Ok(InputStream::Table {
                    data: a.data,
                    steps: a.shape[0],
                    row,
                    name: inp.name.clone(),
                })
            }
            Expr::Call(Callee::Builtin(Builtin::Smooth), args) => {
                let sigma = match args.get(1) {
                    Some(Expr::Num(s)) => *s,
                    Some(e) => eval_const(e, &consts)?,
                    None => 1.0,
                };
                let inner = InputStream::function(&args[0], width, batch, seed, inp)?;
                // Smoothing looks `radius` steps ahead: over a series that much longer (up to the
                // protocol's end), the first `steps` values are those of the whole run, so a run
                // cut short by `--steps` sees the inputs of the full one.
                let protocol = crate::Simulation::protocol_steps(model).unwrap_or(steps);
                let steps = (steps + smoothing_radius(sigma)).min(protocol.max(steps));
                Ok(InputStream::Smoothed {
                    inner: Box::new(inner),
                    consts,
                    dt,
                    sigma,
                    steps,
                    row: batch * width,
                    name: inp.name.clone(),
                    block: Mutex::new((0, Vec::new())),
                })
            }
            Expr::Call(Callee::Builtin(Builtin::Ou), args) => {
                // Ornstein–Uhlenbeck noise with time constant τ and stationary standard deviation
                // σ, from 0: x ← x − dt·x/τ + σ·√(2·dt/τ)·ξ, one stream per batch row and channel.
                let tau = eval_const(&args[0], &consts)?;
                let sigma = eval_const(&args[1], &consts)?;
                if tau <= 0.0 || sigma < 0.0 {
                    return Err(RunError::at("`ou` needs τ > 0 and σ ≥ 0", inp.span));
                }
                let start = Rng::new(seed, draws_stream("ou", inp));
                Ok(InputStream::Ou {
                    dt,
                    tau,
                    kick: sigma * (2.0 * dt / tau).sqrt(),
                    steps,
                    name: inp.name.clone(),
                    state: Mutex::new((0, vec![0.0; batch * width], start.clone())),
                    start,
                })
            }
            other => {
                if contains(other, &|b| matches!(b, Builtin::Smooth | Builtin::Npy | Builtin::Ou)) {
                    return Err(RunError::at(
                        "`smooth`, `ou` and `npy` must be the whole input source",
                        inp.span,
                    ));
                }
                if matches!(other, Expr::Ref(Ref::DataField(..))) || contains_data(other) {
                    return Err(RunError::at("dataset inputs are not run yet", inp.span));
                }
                InputStream::function(other, width, batch, seed, inp)
            }
        }
    }

    fn function(expr: &Expr, width: usize, batch: usize, seed: u64, inp: &Input) -> Result<Self, RunError> {
        let mut sites = Vec::new();
        random_sites(expr, &mut sites);
        let mut rng = Rng::new(seed, draws_stream("input", inp));
        let mut draws = Vec::new();
        for (lo_or_mean, hi_or_std, uniform) in sites {
            draws.push(
                (0..batch * width)
                    .map(|_| {
                        if uniform {
                            rng.uniform(lo_or_mean, hi_or_std)
                        } else {
                            rng.normal(lo_or_mean, hi_or_std)
                        }
                    })
                    .collect(),
            );
        }
        Ok(InputStream::Function {
            expr: expr.clone(),
            draws,
            width,
            batch,
        })
    }

    /// Writes the values of step `n` into `out` (`batch × width`).
    pub fn fill(&self, n: usize, consts: &[f64], dt: f64, out: &mut [f64]) -> Result<(), RunError> {
        match self {
            InputStream::Data { .. } => {}
            InputStream::Smoothed {
                steps,
                row,
                name,
                block,
                ..
            } => {
                has_step(name, n, *steps)?;
                let mut block = block.lock().unwrap_or_else(|e| e.into_inner());
                let (first, values) = &mut *block;
                if n < *first || n >= *first + values.len() / row {
                    *values = self.smoothed(n..(n + SMOOTHED_BLOCK).min(*steps))?;
                    *first = n;
                }
                let k = n - *first;
                out.copy_from_slice(&values[k * row..(k + 1) * row]);
            }
            InputStream::Ou {
                dt,
                tau,
                kick,
                steps,
                name,
                start,
                state,
            } => {
                has_step(name, n, *steps)?;
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                let (at, x, rng) = &mut *state;
                if n < *at {
                    (*at, *rng) = (0, start.clone());
                    x.fill(0.0);
                }
                for _ in *at..n {
                    for v in x.iter_mut() {
                        *v += -dt * *v / tau + kick * rng.normal(0.0, 1.0);
                    }
                }
                *at = n;
                out.copy_from_slice(x);
            }
            InputStream::Table { data, steps, row, name } => {
                has_step(name, n, *steps)?;
                out.copy_from_slice(&data[n * row..(n + 1) * row]);
            }
            InputStream::Function {
                expr,
                draws,
                width,
                batch,
            } => {
                let t = n as f64 * dt;
                for b in 0..*batch {
                    for ch in 0..*width {
                        let mut site = 0;
                        out[b * width + ch] = eval(expr, t, dt, consts, b * width + ch, ch, draws, &mut site);
                    }
                }
            }
        }
        Ok(())
    }
}

impl InputStream {
    /// The smoothed values of `steps` of a [`InputStream::Smoothed`], from the raw values of
    /// the steps they read.
    fn smoothed(&self, steps: Range<usize>) -> Result<Vec<f64>, RunError> {
        let InputStream::Smoothed {
            inner,
            consts,
            dt,
            sigma,
            steps: n,
            row,
            ..
        } = self
        else {
            return Ok(Vec::new());
        };
        let radius = smoothing_radius(*sigma) as isize;
        let sources = (steps.start as isize - radius)..(steps.end as isize + radius);
        let lo = sources.clone().map(|i| reflect(i, *n)).min().unwrap_or(0);
        let hi = sources.map(|i| reflect(i, *n) + 1).max().unwrap_or(0);
        let mut raw = vec![0.0; (hi - lo) * row];
        for (m, values) in (lo..hi).zip(raw.chunks_exact_mut(*row)) {
            inner.fill(m, consts, *dt, values)?;
        }
        Ok(smooth_range(&raw, lo, steps, *n, *row, *sigma))
    }
}

/// The error of a stream of `steps` steps asked for step `n` past them.
fn has_step(name: &str, n: usize, steps: usize) -> Result<(), RunError> {
    if n >= steps {
        return Err(RunError::new(format!("input `{name}` has no values for step {n}")));
    }
    Ok(())
}

/// Evaluates an input expression for one batch row and channel.
#[allow(clippy::too_many_arguments)]
fn eval(
    e: &Expr,
    t: f64,
    dt: f64,
    consts: &[f64],
    slot: usize,
    ch: usize,
    draws: &[Vec<f64>],
    site: &mut usize,
) -> f64 {
    let ev = |x: &Expr, site: &mut usize| eval(x, t, dt, consts, slot, ch, draws, site);
    match e {
        Expr::Num(v) => *v,
        Expr::Str(_) => f64::NAN,
        Expr::Ref(Ref::Time) => t,
        Expr::Ref(Ref::Dt) => dt,
        Expr::Ref(Ref::Const(i)) => consts[*i],
        Expr::Ref(_) => f64::NAN,
        Expr::List(items) => {
            let item = if items.len() == 1 {
                &items[0]
            } else {
                &items[ch.min(items.len() - 1)]
            };
            ev(item, site)
        }
        Expr::Neg(a) => -ev(a, site),
        Expr::Binary(op, a, b) => {
            let (x, y) = (ev(a, site), ev(b, site));
            match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Pow => x.powf(y),
            }
        }
        Expr::Call(Callee::Builtin(Builtin::Uniform | Builtin::Normal), _) => {
            let v = draws[*site][slot];
            *site += 1;
            v
        }
        // (Arguments left to right: a random call site's index counts up as they are read.)
        Expr::Call(Callee::Builtin(b), args) => match args.as_slice() {
            [x] => gle_ir::eval::apply(*b, &[ev(x, site)]),
            [x, y] => {
                let x = ev(x, site);
                gle_ir::eval::apply(*b, &[x, ev(y, site)])
            }
            _ => {
                let xs: Vec<f64> = args.iter().map(|a| ev(a, site)).collect();
                gle_ir::eval::apply(*b, &xs)
            }
        },
        Expr::Call(Callee::User(_), _) | Expr::D(..) | Expr::I(..) => f64::NAN,
    }
}

fn eval_const(e: &Expr, consts: &[f64]) -> Result<f64, RunError> {
    let mut site = 0;
    let v = eval(e, 0.0, 0.0, consts, 0, 0, &[], &mut site);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(RunError::new("a smoothing width must be a constant"))
    }
}

/// Random call sites in evaluation order: `(lo or mean, hi or std, uniform?)`.
fn random_sites(e: &Expr, out: &mut Vec<(f64, f64, bool)>) {
    match e {
        Expr::Call(Callee::Builtin(b @ (Builtin::Uniform | Builtin::Normal)), args) => {
            let num = |x: &Expr| {
                if let Expr::Num(v) = x {
                    *v
                } else {
                    eval_const(x, &[]).unwrap_or(0.0)
                }
            };
            out.push((num(&args[0]), num(&args[1]), *b == Builtin::Uniform));
        }
        Expr::Call(_, args) | Expr::List(args) => args.iter().for_each(|a| random_sites(a, out)),
        Expr::Neg(a) => random_sites(a, out),
        Expr::Binary(_, a, b) | Expr::D(a, b) | Expr::I(a, b) => {
            random_sites(a, out);
            random_sites(b, out);
        }
        Expr::Num(_) | Expr::Str(_) | Expr::Ref(_) => {}
    }
}

fn contains(e: &Expr, pred: &dyn Fn(Builtin) -> bool) -> bool {
    match e {
        Expr::Call(Callee::Builtin(b), args) => pred(*b) || args.iter().any(|a| contains(a, pred)),
        Expr::Call(_, args) | Expr::List(args) => args.iter().any(|a| contains(a, pred)),
        Expr::Neg(a) => contains(a, pred),
        Expr::Binary(_, a, b) | Expr::D(a, b) | Expr::I(a, b) => contains(a, pred) || contains(b, pred),
        _ => false,
    }
}

fn contains_data(e: &Expr) -> bool {
    match e {
        Expr::Ref(Ref::DataField(..)) => true,
        Expr::Call(_, args) | Expr::List(args) => args.iter().any(contains_data),
        Expr::Neg(a) => contains_data(a),
        Expr::Binary(_, a, b) | Expr::D(a, b) | Expr::I(a, b) => contains_data(a) || contains_data(b),
        _ => false,
    }
}

/// How many steps on either side of a step the Gaussian kernel of width `sigma` reaches.
fn smoothing_radius(sigma: f64) -> usize {
    if sigma > 0.0 { (4.0 * sigma + 0.5) as usize } else { 0 }
}

/// The random stream of an input's draws: from its name (and kind), so that editing the file
/// elsewhere — a comment, another declaration — does not change them.
fn draws_stream(kind: &str, inp: &Input) -> u64 {
    crate::rng::name_hash(&format!("{kind} {}", inp.name))
}

/// Gaussian smoothing along time of `row` independent series (scipy's `gaussian_filter1d` with
/// `truncate = 4` and `mode = 'reflect'`).
pub fn smooth(raw: &[f64], steps: usize, row: usize, sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 || steps == 0 {
        return raw.to_vec();
    }
    smooth_range(raw, 0, 0..steps, steps, row, sigma)
}

/// The index step `i` of a series of `n` steps reads when reflected at its ends
/// (d c b a | a b c d | d c b a, repeated).
fn reflect(i: isize, n: usize) -> usize {
    let (n, period) = (n as isize, 2 * n as isize);
    let i = i.rem_euclid(period);
    if i >= n { (period - 1 - i) as usize } else { i as usize }
}

/// [`smooth`]'s values for `steps` of a series of `n` steps, from its raw values of steps
/// `lo..` (`raw`, every step those steps read).
fn smooth_range(raw: &[f64], lo: usize, steps: Range<usize>, n: usize, row: usize, sigma: f64) -> Vec<f64> {
    let radius = smoothing_radius(sigma) as isize;
    let mut w: Vec<f64> = (-radius..=radius)
        .map(|k| (-0.5 * (k * k) as f64 / (sigma * sigma)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.iter_mut().for_each(|x| *x /= total);
    let (start, n) = (steps.start, n as isize);
    // Block by block of steps, tap by tap (each output still sums its taps in order): a
    // shifted copy of the series added in one pass over the block's steps whose source lies
    // inside the series, reflected near its ends; blocks keep the sums in the cache.
    const BLOCK: usize = 256;
    let mut out = vec![0.0; steps.len() * row];
    for block in steps.clone().step_by(BLOCK) {
        let block_end = (block + BLOCK).min(steps.end);
        for (k, wk) in w.iter().enumerate() {
            let shift = k as isize - radius;
            let first = ((-shift).clamp(0, n) as usize).clamp(block, block_end);
            let end = ((n - shift).clamp(0, n) as usize).clamp(first, block_end);
            for s in (block..first).chain(end..block_end) {
                let src = reflect(s as isize + shift, n as usize) - lo;
                for c in 0..row {
                    out[(s - start) * row + c] += wk * raw[src * row + c];
                }
            }
            if first < end {
                let src = (first as isize + shift) as usize - lo;
                let dst = &mut out[(first - start) * row..(end - start) * row];
                for (o, x) in dst.iter_mut().zip(&raw[src * row..]) {
                    *o += wk * x;
                }
            }
        }
    }
    out
}

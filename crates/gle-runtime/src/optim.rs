//! Optimisers applied every step (math.md §9.9): plain SGD, SGD with momentum, and Adam with the
//! bias-corrected update written exactly as PyTorch computes it (the golden runs use it).

use gle_derive::program::{Learnable, Program};
use gle_ir::Optimizer;
use std::sync::Mutex;

/// Work for a team of threads: called once per thread with the thread's index.
pub type Job<'a> = dyn Fn(usize) + Sync + 'a;

/// Per-parameter optimiser state.
#[derive(Clone, Debug)]
pub struct OptimizerState {
    /// First moments (momentum buffer or Adam's m), one per learnable.
    pub(crate) m: Vec<Vec<f64>>,
    /// Adam's second moments.
    pub(crate) s: Vec<Vec<f64>>,
    /// Optimiser steps taken.
    pub(crate) t: u64,
    /// Multiplier of every learning rate (the plateau schedule lowers it).
    pub lr_scale: f64,
    /// Storage of the updates of the step being taken (reused from step to step).
    updates: Vec<Option<ParamUpdate>>,
}

impl OptimizerState {
    /// Zero state for every learnable of `program`.
    pub fn new(program: &Program, data: &[Vec<f64>]) -> Self {
        let zeros = || -> Vec<Vec<f64>> {
            program
                .learnables
                .iter()
                .map(|l| crate::guarded(&vec![0.0; data[l.param].len()]))
                .collect()
        };
        OptimizerState {
            m: zeros(),
            s: zeros(),
            t: 0,
            lr_scale: 1.0,
            updates: Vec::new(),
        }
    }

    /// The rate of a plain-SGD update of `l` at this step (`lr` times `l`'s factor and the
    /// schedule's scale), as [`Self::prepare`] works it out; NaN for any other update.
    pub fn sgd_rate(&self, opt: &Optimizer, l: &Learnable) -> f64 {
        if l.rule.is_some() {
            return f64::NAN;
        }
        match self.update(opt, 0.0, &[], l, None) {
            Update::Sgd { lr } => lr,
            _ => f64::NAN,
        }
    }

    /// Starts the next optimiser step of `program`'s learnables but those in `skip` (updated
    /// by the step itself), with the optimiser `opt`: counts it and works out every
    /// learnable's update for it, which the returned [`StepUpdate`] applies (its elements split
    /// between `threads` parts) — or a kernel, in its own way
    /// ([`crate::StepKernel::apply_update`]) or in the same call as the next step
    /// ([`crate::StepKernel::run_after_update`]).
    pub fn prepare<'a>(
        &'a mut self,
        opt: &Optimizer,
        dt: f64,
        consts: &[f64],
        program: &'a Program,
        skip: &[usize],
        threads: usize,
    ) -> StepUpdate<'a> {
        self.t += 1;
        // Adam's bias corrections, the same for every learnable: worked out once per step.
        let bias = match *opt {
            Optimizer::Adam { beta1, beta2, .. } => Some(adam_bias(beta1, beta2, self.t)),
            _ => None,
        };
        let mut updates = std::mem::take(&mut self.updates);
        updates.clear();
        updates.extend(program.learnables.iter().enumerate().map(|(k, l)| {
            (!skip.contains(&k)).then(|| ParamUpdate {
                update: self.update(opt, dt, consts, l, bias),
                clamp_min: l.clamp_min,
            })
        }));
        self.updates = updates;
        StepUpdate {
            updates: &self.updates,
            learnables: &program.learnables,
            m: &mut self.m,
            s: &mut self.s,
            threads,
        }
    }

    /// The update of learnable `l` at this step, its rates and bias corrections worked out
    /// (Adam's from `bias`, [`adam_bias`] of this step, when given).
    fn update(&self, opt: &Optimizer, dt: f64, consts: &[f64], l: &Learnable, bias: Option<AdamBias>) -> Update {
        if let Some(rule) = l.rule {
            // An explicit rule: θ ← clip(θ + dt·η·Δ), η read from its constant if it names one.
            let eta = rule.lr_const.map_or(rule.lr, |c| consts[c]);
            return Update::Rule {
                step: dt * eta * self.lr_scale,
                clip: rule.clip,
            };
        }
        match *opt {
            Optimizer::Sgd { lr } => Update::Sgd {
                lr: lr * l.lr_factor * self.lr_scale,
            },
            Optimizer::Momentum { lr, mu } => Update::Momentum {
                lr: lr * l.lr_factor * self.lr_scale,
                mu,
            },
            Optimizer::Adam { lr, beta1, beta2, eps } => {
                let lr = lr * l.lr_factor * self.lr_scale;
                let bias = bias.unwrap_or_else(|| adam_bias(beta1, beta2, self.t));
                Update::Adam(Adam {
                    beta1,
                    beta2,
                    eps,
                    step_size: lr / bias.bias1,
                    bias2_sqrt: bias.bias2_sqrt,
                    bias2_reciprocal: bias.bias2_reciprocal,
                })
            }
        }
    }
}

/// Adam's bias corrections at step `t`, the same for every learnable (worked out once per step).
#[derive(Clone, Copy, Debug)]
struct AdamBias {
    /// `1 − β₁ᵗ`, as PyTorch computes it.
    bias1: f64,
    /// `√(1 − β₂ᵗ)`, as PyTorch computes it.
    bias2_sqrt: f64,
    /// Its reciprocal, where [`Reciprocal`] can divide by it.
    bias2_reciprocal: Option<Reciprocal>,
}

/// Adam's bias corrections at step `t`.
fn adam_bias(beta1: f64, beta2: f64, t: u64) -> AdamBias {
    let t = t as f64;
    let bias2_sqrt = (1.0 - beta2.powf(t)).sqrt();
    AdamBias {
        bias1: 1.0 - beta1.powf(t),
        bias2_sqrt,
        bias2_reciprocal: Reciprocal::new(bias2_sqrt),
    }
}

/// One optimiser update with its constants for this step.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Update {
    Rule { step: f64, clip: Option<(f64, f64)> },
    Sgd { lr: f64 },
    Momentum { lr: f64, mu: f64 },
    Adam(Adam),
}

/// The constants of one Adam step.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Adam {
    beta1: f64,
    beta2: f64,
    eps: f64,
    step_size: f64,
    bias2_sqrt: f64,
    /// `1 / bias2_sqrt` to divide by it without the divider, where [`Reciprocal`] can.
    bias2_reciprocal: Option<Reciprocal>,
}

/// Elements the bias-corrected Adam update works through at a time, in two passes.
const ADAM_TILE: usize = 256;

impl Adam {
    /// Updates `theta` and its moments `m`, `s` against the gradient `g`. Its square roots and
    /// divisions are most of a step at batch 1; where the CPU has AVX and FMA the loops are
    /// compiled for them (four lanes per instruction instead of two, half the time). Per element
    /// the IEEE operations, correctly rounded at any width, and so the results, are the same.
    /// Two ways to spare the divider:
    /// - once the bias correction `√(1 − β₂ᵗ)` has rounded to 1.0 (from step 37,412 for
    ///   β₂ = 0.999), dividing by it changes nothing (`x / 1.0` is `x`) and is skipped;
    /// - before that, where `mul_add` is an instruction, the division by it is
    ///   [`Reciprocal::divide`], which gives the same bits with multiplies.
    ///
    /// Returns whether every updated value is finite.
    fn apply(&self, theta: &mut [f64], m: &mut [f64], s: &mut [f64], g: &[f64]) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU was just found to support AVX and FMA, the features
                // `apply_avx_fma` is compiled for.
                #[allow(unsafe_code)]
                return unsafe { self.apply_avx_fma(theta, m, s, g) };
            }
            // Without FMA, `mul_add` is a library call: divide.
            if self.bias2_sqrt != 1.0 {
                return self.fused(theta, m, s, g, |root| root / self.bias2_sqrt);
            }
        }
        self.apply_fma(theta, m, s, g)
    }

    /// [`Self::apply_fma`] compiled for AVX and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx,fma")]
    fn apply_avx_fma(&self, theta: &mut [f64], m: &mut [f64], s: &mut [f64], g: &[f64]) -> bool {
        self.apply_fma(theta, m, s, g)
    }

    /// [`Self::apply`] where `mul_add` is an instruction (on x86-64 inlined into
    /// [`Self::apply_avx_fma`]; AArch64 always has it).
    #[inline(always)]
    fn apply_fma(&self, theta: &mut [f64], m: &mut [f64], s: &mut [f64], g: &[f64]) -> bool {
        match self.bias2_reciprocal {
            _ if self.bias2_sqrt == 1.0 => self.fused(theta, m, s, g, |root| root),
            Some(reciprocal) => self.tiled(theta, m, s, g, reciprocal),
            None => self.fused(theta, m, s, g, |root| root / self.bias2_sqrt),
        }
    }

    /// The update in one pass, `corrected(√s)` the bias-corrected root. Slices of one length
    /// and an index loop, so that the compiler drops the bounds checks and vectorises (the
    /// finiteness test too, [`nonfinite_bits`]); inlined into its callers so that it is
    /// compiled for their features.
    #[inline(always)]
    fn fused(
        &self,
        theta: &mut [f64],
        m: &mut [f64],
        s: &mut [f64],
        g: &[f64],
        corrected: impl Fn(f64) -> f64,
    ) -> bool {
        let n = theta.len();
        let (m, s, g) = (&mut m[..n], &mut s[..n], &g[..n]);
        let mut nonfinite = 0;
        for i in 0..n {
            m[i] += (1.0 - self.beta1) * (g[i] - m[i]);
            s[i] = s[i] * self.beta2 + (1.0 - self.beta2) * g[i] * g[i];
            let denom = corrected(s[i].sqrt()) + self.eps;
            theta[i] -= self.step_size * (m[i] / denom);
            nonfinite |= nonfinite_bits(theta[i]);
        }
        nonfinite == 0
    }

    /// The bias-corrected update, dividing by the correction with `reciprocal`, in tiles of
    /// [`ADAM_TILE`] elements and two passes per tile: the denominators, then the moments and
    /// parameters. In one pass each element is one long chain of dependent operations (root,
    /// four multiplies, division), too long for the core to overlap enough elements to keep
    /// its divider busy; two shorter chains it overlaps (BENCHMARKS.md, 12-05 fourth session).
    #[inline(always)]
    fn tiled(&self, theta: &mut [f64], m: &mut [f64], s: &mut [f64], g: &[f64], reciprocal: Reciprocal) -> bool {
        let n = theta.len();
        let (m, s, g) = (&mut m[..n], &mut s[..n], &g[..n]);
        let mut denom = [0.0; ADAM_TILE];
        let mut nonfinite = 0;
        let mut start = 0;
        while start < n {
            let end = n.min(start + ADAM_TILE);
            let (theta, m, s, g) = (
                &mut theta[start..end],
                &mut m[start..end],
                &mut s[start..end],
                &g[start..end],
            );
            let denom = &mut denom[..end - start];
            for i in 0..denom.len() {
                s[i] = s[i] * self.beta2 + (1.0 - self.beta2) * g[i] * g[i];
                denom[i] = reciprocal.divide(s[i].sqrt()) + self.eps;
            }
            for i in 0..denom.len() {
                m[i] += (1.0 - self.beta1) * (g[i] - m[i]);
                theta[i] -= self.step_size * (m[i] / denom[i]);
                nonfinite |= nonfinite_bits(theta[i]);
            }
            start = end;
        }
        nonfinite == 0
    }
}

/// Zero where `x` is finite, not where it is infinite or NaN: the bits of `x − x`, which is
/// `+0` for every finite `x` and NaN otherwise. OR-ed over a loop, the test costs two vector
/// instructions per four elements; `is_finite` into a `bool` costs five (the mask is packed to
/// bytes), a tenth of an Adam update's time.
#[inline(always)]
#[allow(clippy::eq_op, reason = "x − x is the test: NaN exactly where x is not finite")]
fn nonfinite_bits(x: f64) -> u64 {
    (x - x).to_bits()
}

/// Division by one divisor `c` with multiplies and fused multiply-adds, bit for bit the
/// correctly rounded `x / c` for every `x` that is `+0`, `+∞`, NaN or of magnitude within
/// `[2⁻⁵³⁷, 2⁵¹²]`: every square root of a double but `−0` (`√−0`). Adam divides `√s` by its
/// bias correction so, where `s` is never `−0` (it is a sum whose last term is `+0` or
/// positive). The divider, which also takes the square root, is the bound of an Adam step; these
/// operations run beside it (on CPUs with FMA; elsewhere they are slow).
///
/// Why the bits are those of `x / c` (binary64, `p = 53`, rounding to nearest, `RN`):
/// 1. `hi = RN(1/c)`, and `lo = RN(e·hi)` with `e = 1 − c·hi` (exact with an FMA), so
///    `hi + lo` is `1/c` to a relative `2⁻¹⁰⁵`. `q₁ = RN(x·hi + RN(x·lo))` then rounds a value
///    within `2⁻¹⁰⁴·|x/c|` of `x/c`: `q₁` is one of the two doubles around `x/c` (faithful).
/// 2. `r = x − c·q₁` is exact (the remainder of a faithful quotient is a double), and
///    `q = RN(q₁ + r·hi)` is `RN(x/c)` (Markstein's quotient refinement: Markstein 1990, IBM J.
///    Res. Dev. 34(1); Handbook of Floating-Point Arithmetic, division with an FMA). With `x/c`
///    scaled into `[1, 2)` and `ε = c·hi − 1`, `|ε| ≤ 2⁻⁵³(1 − 2⁻⁵³)`, the FMA rounds
///    `q₁ + r·hi = x/c + (x/c − q₁)·ε`. For that rounding to differ from `x/c`'s, a midpoint
///    between doubles at some distance `δ` from `x/c` would have to lie within
///    `|x/c − q₁|·|ε| ≤ (2⁻⁵³ + δ)·|ε|` of it, which needs `δ < 2⁻¹⁰⁶`. But a quotient of
///    doubles is never such a midpoint and lies at least `2⁻⁵³/C > 2⁻¹⁰⁶` from every one
///    (`C < 2⁵³` the integer significand of `c`).
/// 3. Nothing underflows or overflows for `|x|` within `[2⁻⁵³⁷, 2⁵¹²]` and `c` within
///    `[2⁻⁶⁴, 1)`. For `+0` every step gives `+0`, and NaN comes through as it is (the only
///    NaN operand); `+∞` is passed on as it is, which is what dividing it by `c` gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reciprocal {
    c: f64,
    hi: f64,
    lo: f64,
}

impl Reciprocal {
    /// The reciprocal of `c`, where `c` lies in `[2⁻⁶⁴, 1)` (the domain of the proof).
    pub fn new(c: f64) -> Option<Self> {
        if !(2f64.powi(-64)..1.0).contains(&c) {
            return None;
        }
        let hi = 1.0 / c;
        let lo = (-c).mul_add(hi, 1.0) * hi;
        Some(Reciprocal { c, hi, lo })
    }

    /// `x / c`, for `x` in the domain [`Reciprocal`] gives.
    #[inline(always)]
    pub fn divide(self, x: f64) -> f64 {
        let q1 = x.mul_add(self.hi, x * self.lo);
        let r = (-self.c).mul_add(q1, x);
        let q = r.mul_add(self.hi, q1);
        // One compare and blend, branch-free (every other one is a tenth of an Adam update).
        if x == f64::INFINITY { x } else { q }
    }
}

/// One optimiser step, prepared ([`OptimizerState::prepare`]): every learnable's update with its
/// rates and bias corrections for the step, and the optimiser's moments.
pub struct StepUpdate<'a> {
    /// Per learnable, its update (`None` for those the kernel updates itself).
    pub updates: &'a [Option<ParamUpdate>],
    /// The program's learnables: each one's parameter and gradient buffers.
    pub learnables: &'a [Learnable],
    /// Per learnable, its first moments (momentum buffer or Adam's m), as long as its parameter.
    pub m: &'a mut [Vec<f64>],
    /// Per learnable, Adam's second moments, as long as its parameter.
    pub s: &'a mut [Vec<f64>],
    /// The threads the runtime shares the update between (1 for small parameters).
    pub threads: usize,
}

impl StepUpdate<'_> {
    /// Applies the update to the parameters in `data` against their gradients, the elements of
    /// every parameter split between [`Self::threads`] parts that `run` executes (each job `t`
    /// updates part `t`). Returns the first parameter value that is not finite afterwards, as
    /// `(learnable, element)`.
    pub fn apply(self, data: &mut [Vec<f64>], run: &mut dyn FnMut(&Job)) -> Option<(usize, usize)> {
        let StepUpdate {
            updates,
            learnables,
            m,
            s,
            threads,
        } = self;
        if threads <= 1 {
            // One part per parameter, updated here: no allocation (a LagLine step is ~0.5 µs).
            let mut bad = None;
            for (k, ((l, update), (m, s))) in learnables.iter().zip(updates).zip(m.iter_mut().zip(s)).enumerate() {
                let Some(update) = update else { continue };
                let (theta, grad) = param_and_grad(data, l.param, l.grad);
                if let Some(i) = update.apply(theta, grad, m, s) {
                    bad = bad.or(Some((k, i)));
                }
            }
            return bad;
        }
        let mut buffers: Vec<Option<&mut Vec<f64>>> = data.iter_mut().map(Some).collect();
        let mut parts: Vec<Vec<Part<'_>>> = (0..threads).map(|_| Vec::new()).collect();
        let moments = m.iter_mut().zip(s.iter_mut());
        for (k, ((l, update), (m, s))) in learnables.iter().zip(updates).zip(moments).enumerate() {
            let Some(update) = *update else { continue };
            let (Some(theta), Some(grad)) = (buffers[l.param].take(), buffers[l.grad].take()) else {
                unreachable!("every learnable has its own parameter and gradient buffers")
            };
            let n = theta.len();
            let (mut theta, mut grad, mut m, mut s) = (&mut theta[..], &grad[..n], &mut m[..n], &mut s[..n]);
            let mut offset = 0;
            for (t, part) in parts.iter_mut().enumerate() {
                let len = n * (t + 1) / threads - n * t / threads;
                let (theta_t, theta_rest) = std::mem::take(&mut theta).split_at_mut(len);
                let (grad_t, grad_rest) = grad.split_at(len);
                let (m_t, m_rest) = std::mem::take(&mut m).split_at_mut(len);
                let (s_t, s_rest) = std::mem::take(&mut s).split_at_mut(len);
                (theta, grad, m, s) = (theta_rest, grad_rest, m_rest, s_rest);
                part.push(Part {
                    learnable: k,
                    offset,
                    update,
                    theta: theta_t,
                    grad: grad_t,
                    m: m_t,
                    s: s_t,
                });
                offset += len;
            }
        }
        let parts: Vec<Mutex<Vec<Part<'_>>>> = parts.into_iter().map(Mutex::new).collect();
        let bad: Mutex<Option<(usize, usize)>> = Mutex::new(None);
        run(&|t| {
            let mut part = parts[t].lock().unwrap_or_else(|e| e.into_inner());
            for p in part.iter_mut() {
                if let Some(i) = p.update.apply(p.theta, p.grad, p.m, p.s) {
                    let mut first = bad.lock().unwrap_or_else(|e| e.into_inner());
                    let at = (p.learnable, p.offset + i);
                    *first = Some(first.map_or(at, |f| f.min(at)));
                }
            }
        });
        bad.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// A contiguous range of one learnable's elements, with its gradient and moments.
struct Part<'a> {
    learnable: usize,
    /// Index of the first element in the whole parameter.
    offset: usize,
    update: ParamUpdate,
    theta: &'a mut [f64],
    grad: &'a [f64],
    m: &'a mut [f64],
    s: &'a mut [f64],
}

/// One learnable's optimiser update at one step, its rates and bias corrections worked out:
/// the same operations for each element, so any range of the elements may be updated apart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamUpdate {
    update: Update,
    clamp_min: Option<f64>,
}

impl ParamUpdate {
    /// Updates `theta` (a range of a parameter's elements) against `grad`, the gradient of the
    /// same elements, with the optimiser's moments of the same elements (`m`, `s`; as long as
    /// `theta`), then applies the lower clamp; returns the first element that is not finite.
    pub fn apply(&self, theta: &mut [f64], grad: &[f64], m: &mut [f64], s: &mut [f64]) -> Option<usize> {
        let n = theta.len();
        let (g, m, s) = (&grad[..n], &mut m[..n], &mut s[..n]);
        // Whether the update already found every value finite (a clamp keeps finite values so).
        let mut finite = false;
        match self.update {
            Update::Rule { step, clip } => {
                for (p, g) in theta.iter_mut().zip(g) {
                    *p += step * g;
                    if let Some((lo, hi)) = clip {
                        *p = p.clamp(lo, hi);
                    }
                }
            }
            Update::Sgd { lr } => {
                for (p, g) in theta.iter_mut().zip(g) {
                    *p -= lr * g;
                }
            }
            Update::Momentum { lr, mu } => {
                for ((p, g), m) in theta.iter_mut().zip(g).zip(m) {
                    *m = mu * *m + g;
                    *p -= lr * *m;
                }
            }
            Update::Adam(adam) => {
                finite = adam.apply(theta, m, s, g);
            }
        }
        // Explicit rules clip instead of clamping.
        if let (Some(min), false) = (self.clamp_min, matches!(self.update, Update::Rule { .. })) {
            theta.iter_mut().for_each(|p| *p = p.max(min));
        }
        // A branch-free scan first (it vectorises); the position only after a blow-up.
        if finite || theta.iter().fold(0, |bits, &p| bits | nonfinite_bits(p)) == 0 {
            return None;
        }
        theta.iter().position(|p| !p.is_finite())
    }
}

/// The parameter buffer (mutable) and its gradient buffer, which are distinct.
fn param_and_grad(data: &mut [Vec<f64>], param: usize, grad: usize) -> (&mut [f64], &[f64]) {
    if param < grad {
        let (lo, hi) = data.split_at_mut(grad);
        (&mut lo[param], &hi[0])
    } else {
        let (lo, hi) = data.split_at_mut(param);
        (&mut hi[0], &lo[grad])
    }
}

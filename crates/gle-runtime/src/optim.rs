//! Optimisers applied every step (math.md §9.9): plain SGD, SGD with momentum, and Adam with the
//! bias-corrected update written exactly as PyTorch computes it (the golden runs use it).

use gle_derive::program::Program;
use gle_ir::Optimizer;

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
}

impl OptimizerState {
    /// Zero state for every learnable of `program`.
    pub fn new(program: &Program, data: &[Vec<f64>]) -> Self {
        let zeros: Vec<Vec<f64>> = program
            .learnables
            .iter()
            .map(|l| vec![0.0; data[l.param].len()])
            .collect();
        OptimizerState {
            m: zeros.clone(),
            s: zeros,
            t: 0,
            lr_scale: 1.0,
        }
    }

    /// One step against the gradients, then the lower clamps. Returns the first parameter
    /// value that is not finite afterwards, as `(learnable, element)`: the check rides along
    /// the update loop instead of a separate pass.
    pub fn step(
        &mut self,
        opt: &Optimizer,
        dt: f64,
        consts: &[f64],
        program: &Program,
        data: &mut [Vec<f64>],
    ) -> Option<(usize, usize)> {
        self.t += 1;
        let mut bad = None;
        for (k, l) in program.learnables.iter().enumerate() {
            let (theta, grad) = param_and_grad(data, l.param, l.grad);
            if let Some(rule) = l.rule {
                // An explicit rule: θ ← clip(θ + dt·η·Δ), η read from its constant if it names one.
                let eta = rule.lr_const.map_or(rule.lr, |c| consts[c]);
                let clip = rule.clip;
                let step = dt * eta * self.lr_scale;
                for (p, g) in theta.iter_mut().zip(grad) {
                    *p += step * g;
                    if let Some((lo, hi)) = clip {
                        *p = p.clamp(lo, hi);
                    }
                }
                if bad.is_none()
                    && let Some(i) = theta.iter().position(|p| !p.is_finite())
                {
                    bad = Some((k, i));
                }
                continue;
            }
            match *opt {
                Optimizer::Sgd { lr } => {
                    let lr = lr * l.lr_factor * self.lr_scale;
                    for (p, g) in theta.iter_mut().zip(grad) {
                        *p -= lr * g;
                    }
                }
                Optimizer::Momentum { lr, mu } => {
                    let lr = lr * l.lr_factor * self.lr_scale;
                    for ((p, g), m) in theta.iter_mut().zip(grad).zip(&mut self.m[k]) {
                        *m = mu * *m + g;
                        *p -= lr * *m;
                    }
                }
                Optimizer::Adam { lr, beta1, beta2, eps } => {
                    let lr = lr * l.lr_factor * self.lr_scale;
                    let t = self.t as f64;
                    let bias1 = 1.0 - beta1.powf(t);
                    let bias2_sqrt = (1.0 - beta2.powf(t)).sqrt();
                    let step_size = lr / bias1;
                    // Slices of one length and an index loop, so that the compiler drops the
                    // bounds checks and runs two lanes per instruction (sqrt and division are
                    // most of a step at batch 1); per element the operations are unchanged.
                    let n = theta.len();
                    let (m, s, g) = (&mut self.m[k][..n], &mut self.s[k][..n], &grad[..n]);
                    for i in 0..n {
                        m[i] += (1.0 - beta1) * (g[i] - m[i]);
                        s[i] = s[i] * beta2 + (1.0 - beta2) * g[i] * g[i];
                        let denom = s[i].sqrt() / bias2_sqrt + eps;
                        theta[i] -= step_size * (m[i] / denom);
                    }
                }
            }
            if let Some(min) = l.clamp_min {
                theta.iter_mut().for_each(|p| *p = p.max(min));
            }
            if bad.is_none()
                && let Some(i) = theta.iter().position(|p| !p.is_finite())
            {
                bad = Some((k, i));
            }
        }
        bad
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

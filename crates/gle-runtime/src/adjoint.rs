//! The offline exact-adjoint error mode at run time (`errors adjoint(window: N)`, math.md
//! §9.10): every learning step is recorded; when a window is full, λ is integrated backwards
//! over it (see [`gle_derive::adjoint`]) and the gradients `−⟨Σₙ λ xᵀ dt⟩_B` are written for
//! the optimiser, which then steps once. A window never spans two phases: a phase that ends
//! before its window is full drops the partial window.

use gle_derive::adjoint::{AdjointMap, AdjointPlan, Tau};
use gle_derive::program::{BufId, Program};

/// The steps of the current window and how to turn them into gradients.
pub(crate) struct Recorder {
    plan: AdjointPlan,
    /// Recorded buffers, whether each is recorded before the step (values the step's commits
    /// overwrite), and its offset in a frame.
    recorded: Vec<(BufId, bool, usize)>,
    /// Values per frame (one step).
    frame_len: usize,
    /// Whole frames, one after the other, then the frame being recorded.
    frames: Vec<f64>,
}

impl Recorder {
    /// A recorder for `plan` over the simulation's buffers `data`.
    pub fn new(plan: AdjointPlan, program: &Program, data: &[Vec<f64>]) -> Self {
        let mut offset = 0;
        let recorded = plan
            .recorded()
            .into_iter()
            .map(|b| {
                let before = program.commits.iter().chain(&program.swaps).any(|&(dst, _)| dst == b);
                let at = offset;
                offset += data[b].len();
                (b, before, at)
            })
            .collect();
        Recorder {
            plan,
            recorded,
            frame_len: offset,
            frames: Vec::new(),
        }
    }

    /// Whole frames recorded so far.
    pub fn len(&self) -> usize {
        self.frames.len() / self.frame_len.max(1)
    }

    /// Drops the recorded steps.
    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// The recorded steps, for checkpoints.
    pub fn frames(&self) -> &[f64] {
        &self.frames
    }

    /// Restores recorded steps from a checkpoint; `false` if they do not fit this model.
    pub fn restore(&mut self, frames: Vec<f64>) -> bool {
        let whole = frames.is_empty() || (self.frame_len > 0 && frames.len().is_multiple_of(self.frame_len));
        if whole {
            self.frames = frames;
        }
        whole
    }

    /// Records what the step is about to read of the buffers its commits overwrite.
    pub fn before_step(&mut self, data: &[Vec<f64>]) {
        let start = self.frames.len();
        self.frames.resize(start + self.frame_len, 0.0);
        for &(b, before, at) in &self.recorded {
            if before {
                self.frames[start + at..start + at + data[b].len()].copy_from_slice(&data[b]);
            }
        }
    }

    /// Records the rest of the step; `true` when the window is full.
    pub fn after_step(&mut self, data: &[Vec<f64>]) -> bool {
        let start = self.frames.len() - self.frame_len;
        for &(b, before, at) in &self.recorded {
            if !before {
                self.frames[start + at..start + at + data[b].len()].copy_from_slice(&data[b]);
            }
        }
        self.len() >= self.plan.window
    }

    /// Buffer `b` as recorded at step `t` of the window.
    fn at(&self, t: usize, b: BufId, len: usize) -> &[f64] {
        let &(_, _, at) = self.recorded.iter().find(|r| r.0 == b).expect("a recorded buffer");
        let start = t * self.frame_len + at;
        &self.frames[start..start + len]
    }

    /// Integrates λ backwards over the window, writes every learned projection's gradient and
    /// empties the window.
    pub fn write_gradients(&mut self, data: &mut [Vec<f64>], batch: usize, dt: f64) {
        let steps = self.len();
        let pops = &self.plan.populations;
        let per_neuron = |tau: Tau, n: usize| -> Vec<f64> {
            match tau {
                Tau::Num(v) => vec![v; n],
                Tau::Param(b) => data[b].clone(),
            }
        };
        let tau_m: Vec<Vec<f64>> = pops.iter().map(|p| per_neuron(p.tau_m, p.len)).collect();
        let tau_r: Vec<Vec<f64>> = pops.iter().map(|p| per_neuron(p.tau_r, p.len)).collect();
        // α and λ of every learner at every step of the window, rows of batch × len.
        let mut alpha: Vec<Vec<f64>> = pops.iter().map(|p| vec![0.0; steps * batch * p.len]).collect();
        let mut lambda: Vec<Vec<f64>> = alpha.clone();
        for t in (0..steps).rev() {
            for (i, pop) in pops.iter().enumerate() {
                let width = batch * pop.len;
                let here = t * width..(t + 1) * width;
                // From above: Σ over the projections leaving this learner of their map of λ.
                let mut above = vec![0.0; width];
                for link in self.plan.links.iter().filter(|l| l.pre == i) {
                    let lam = &lambda[link.post][t * batch * link.rows..(t + 1) * batch * link.rows];
                    for b in 0..batch {
                        let (lam, dst) = (
                            &lam[b * link.rows..(b + 1) * link.rows],
                            &mut above[b * link.cols..(b + 1) * link.cols],
                        );
                        match link.map {
                            AdjointMap::Dense { w } => {
                                for (r, l) in lam.iter().enumerate() {
                                    let row = &data[w][r * link.cols..(r + 1) * link.cols];
                                    for (d, wv) in dst.iter_mut().zip(row) {
                                        *d += wv * l;
                                    }
                                }
                            }
                            AdjointMap::Diagonal { w } => {
                                for ((d, wv), l) in dst.iter_mut().zip(&data[w]).zip(lam) {
                                    *d += wv * l;
                                }
                            }
                            AdjointMap::Identity => {
                                for (d, l) in dst.iter_mut().zip(lam) {
                                    *d += l;
                                }
                            }
                        }
                    }
                }
                let (e, slope) = (self.at(t, pop.local_error, width), self.at(t, pop.slope, width));
                for (k, a) in alpha[i][here.clone()].iter_mut().enumerate() {
                    *a = e[k] + slope[k] * above[k];
                }
                if t + 1 == steps {
                    continue; // λ = 0 at the end of the window
                }
                for k in 0..width {
                    let j = k % pop.len;
                    let (tm, tr) = (tau_m[i][j], tau_r[i][j]);
                    let (a1, a0) = (alpha[i][here.start + width + k], alpha[i][here.start + k]);
                    let tilde = a1 - tr / dt * (a1 - a0);
                    lambda[i][here.start + k] = (-dt / tm).exp() * lambda[i][here.start + width + k] + dt / tm * tilde;
                }
            }
        }
        for g in &self.plan.gradients {
            let rows = g.rows;
            let scale = -dt / batch as f64;
            let mut grad = vec![0.0; data[g.grad].len()];
            let mut bias = vec![0.0; rows];
            for t in 0..steps {
                let lam = &lambda[g.post][t * batch * rows..(t + 1) * batch * rows];
                let x = self.at(t, g.x, batch * g.cols);
                for b in 0..batch {
                    let (lam, x) = (&lam[b * rows..(b + 1) * rows], &x[b * g.cols..(b + 1) * g.cols]);
                    for (r, l) in lam.iter().enumerate() {
                        bias[r] += l;
                        if g.dense {
                            for (gv, xv) in grad[r * g.cols..(r + 1) * g.cols].iter_mut().zip(x) {
                                *gv += l * xv;
                            }
                        } else {
                            grad[r] += l * x[r];
                        }
                    }
                }
            }
            crate::refill(&mut data[g.grad], grad.into_iter().map(|v| v * scale).collect());
            if let Some(bg) = g.bias_grad {
                crate::refill(&mut data[bg], bias.into_iter().map(|v| v * scale).collect());
            }
        }
        self.frames.clear();
    }
}

//! Loss and accuracy of a phase: the mean output cost over its steps and batch rows, and the
//! fraction of samples the read-out classifies correctly.

use crate::Simulation;
use gle_derive::program::CostKind;
use gle_ir::Readout;

/// Accumulators of one phase.
#[derive(Clone, Debug, Default)]
pub struct PhaseMetrics {
    pub(crate) loss_sum: f64,
    pub(crate) loss_count: usize,
    pub(crate) correct: usize,
    pub(crate) samples: usize,
    /// Per batch row: the read-out summed over the current sample.
    pub(crate) sums: Vec<f64>,
}

impl PhaseMetrics {
    /// Accounts for the step just taken.
    pub fn observe(&mut self, sim: &Simulation) {
        self.observe_step(sim, &|b| sim.buffer(b), sim.feed_step);
    }

    /// Accounts for a step after which buffer `b` held `values(b)` (for the buffers of
    /// [`buffers_read`]), the `feed_steps`-th of the running data pass.
    pub(crate) fn observe_step<'a>(
        &mut self,
        sim: &Simulation,
        values: &dyn Fn(usize) -> &'a [f64],
        feed_steps: usize,
    ) {
        let batch = sim.batch();
        for cost in &sim.program.costs {
            let (p, t) = (values(cost.prediction), values(cost.target));
            for b in 0..batch {
                let (p, t) = (
                    &p[b * cost.len..(b + 1) * cost.len],
                    &t[b * cost.len..(b + 1) * cost.len],
                );
                let value = match cost.kind {
                    CostKind::Mse => 0.5 * p.iter().zip(t).map(|(x, y)| (x - y) * (x - y)).sum::<f64>(),
                    CostKind::CrossEntropy => {
                        let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let lse = max + p.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
                        p.iter().zip(t).map(|(x, y)| y * (lse - x)).sum::<f64>()
                    }
                };
                self.loss_sum += value;
                self.loss_count += 1;
            }
        }
        let Some(readout) = sim.model.protocol.readout else {
            return;
        };
        let (pop, var, summed) = match readout {
            Readout::ArgmaxOfSum(p, v) => (p, v, true),
            Readout::ArgmaxOfLast(p, v) => (p, v, false),
        };
        let values = values(sim.pop_var_buffer(pop, var));
        let n = sim.model.populations[pop].size;
        self.sums.resize(batch * n, 0.0);
        for b in 0..batch {
            let Some((d, test, sample, in_sample, sps)) = sim.sample_after(feed_steps, b) else {
                return;
            };
            let row = &values[b * n..(b + 1) * n];
            let acc = &mut self.sums[b * n..(b + 1) * n];
            if in_sample == 0 {
                acc.iter_mut().for_each(|a| *a = 0.0);
            }
            for (a, v) in acc.iter_mut().zip(row) {
                *a = if summed { *a + v } else { *v };
            }
            if in_sample + 1 == sps {
                let ds = sim.dataset(d);
                let split = if test {
                    ds.test.as_ref().unwrap_or(&ds.train)
                } else {
                    &ds.train
                };
                let Some(label) = class_of(split, sample) else { continue };
                let predicted = argmax(acc);
                self.samples += 1;
                if predicted == label {
                    self.correct += 1;
                }
            }
        }
    }

    /// Mean cost per step and batch row.
    pub fn loss(&self) -> Option<f64> {
        (self.loss_count > 0).then(|| self.loss_sum / self.loss_count as f64)
    }

    /// Fraction classified correctly.
    pub fn accuracy(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.correct as f64 / self.samples as f64)
    }
}

/// The buffers [`PhaseMetrics::observe`] reads after a step: the costs' predictions and
/// targets and the read-out's variable.
pub(crate) fn buffers_read(sim: &Simulation) -> Vec<usize> {
    let mut read: Vec<usize> = sim
        .program
        .costs
        .iter()
        .flat_map(|c| [c.prediction, c.target])
        .collect();
    if let Some(Readout::ArgmaxOfSum(p, v) | Readout::ArgmaxOfLast(p, v)) = sim.model.protocol.readout {
        read.push(sim.pop_var_buffer(p, v));
    }
    read.sort_unstable();
    read.dedup();
    read
}

/// The class of a sample: its label, or the argmax of its target vector.
fn class_of(split: &[crate::data::FieldData], sample: usize) -> Option<usize> {
    let labels = split.iter().find(|f| f.labels);
    match labels {
        Some(f) => Some(f.data[sample] as usize),
        None => {
            let f = split.iter().rev().find(|f| f.per_row > 1)?;
            Some(argmax(&f.data[sample * f.per_row..(sample + 1) * f.per_row]))
        }
    }
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

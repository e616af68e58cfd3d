//! Steps taken several at a time: between two steps the protocol must observe (records,
//! checkpoints), it materialises the inputs of the steps, hands them to the kernel in one call
//! ([`StepKernel::run_steps`]) with the optimiser to run between them, and afterwards accounts
//! for the steps' metrics from the values the kernel copied out.

use crate::{BetweenSteps, Chunk, RunError, Simulation, StepKernel, metrics};

/// The most values (inputs and copies for the metrics) the steps of one call hold: 8 MB.
const CHUNK_VALUES: usize = 1 << 20;

/// The most steps of one call (a longer run gains nothing: a call costs about a step's
/// bookkeeping).
const CHUNK_STEPS: u64 = 256;

/// Storage reused from one call to the next.
#[derive(Default)]
pub(crate) struct Storage {
    feeds: Vec<(usize, Vec<f64>)>,
    taps: Vec<(usize, Vec<f64>)>,
}

impl Simulation {
    /// How many steps the protocol may take in one kernel call now, the phase ending before
    /// step `end` and [`crate::Hooks::observe`] needing the steps whose index is a multiple of
    /// `observe_every`: 0 or 1 where steps must be taken one by one (without a kernel, or
    /// learning with the adjoint window, which works around every learning step).
    pub(crate) fn chunk_steps(&self, end: u64, observe_every: u64) -> usize {
        if self.kernel.is_none() || (self.learning && self.adjoint.is_some()) {
            return 0;
        }
        let s = self.step;
        let mut last = end.min(self.limit.unwrap_or(u64::MAX)); // one past the last step
        if observe_every > 0 {
            last = last.min(s.div_ceil(observe_every) * observe_every + 1);
        }
        if let Some(every) = self.checkpoint_every {
            last = last.min((s / every + 1) * every);
        }
        let span = last.saturating_sub(s);
        if span <= 1 {
            return span as usize;
        }
        let per_step: usize = self
            .fed
            .iter()
            .chain(&metrics::buffers_read(self))
            .map(|&b| self.data[b].len())
            .sum();
        let fits = (CHUNK_VALUES / per_step.max(1)).max(1) as u64;
        span.min(fits).min(CHUNK_STEPS) as usize
    }

    /// Takes up to `steps` steps in one kernel call: their inputs first (only the steps before
    /// the first whose inputs cannot be made, which then fails in the next call), then the
    /// steps with the optimiser's steps between them when learning (the last step's is the
    /// caller's), then their metrics. Reports a blow-up as [`Simulation::step`] and
    /// [`Simulation::optimizer_step`] do.
    pub(crate) fn run_chunk(&mut self, steps: usize) -> Result<(), RunError> {
        let mut store = std::mem::take(&mut self.chunk);
        let steps = self.materialise(&mut store, steps);
        let result = steps.and_then(|steps| self.run_materialised(&mut store, steps));
        self.chunk = store;
        result
    }

    /// Fills the feeds of `store` for up to `steps` steps; returns how many it could (the
    /// feeds then hold that many).
    fn materialise(&self, store: &mut Storage, steps: usize) -> Result<usize, RunError> {
        store.feeds.resize_with(self.fed.len(), Default::default);
        for ((buf, values), &b) in store.feeds.iter_mut().zip(&self.fed) {
            *buf = b;
            values.resize(steps * self.data[b].len(), 0.0);
        }
        for k in 0..steps {
            for (buf, values) in store.feeds.iter_mut() {
                let len = self.data[*buf].len();
                let row = &mut values[k * len..(k + 1) * len];
                if let Err(e) = self.fill_fed(*buf, self.step + k as u64, self.feed_step + k, row) {
                    if k == 0 {
                        return Err(e);
                    }
                    for (buf, values) in store.feeds.iter_mut() {
                        values.truncate(k * self.data[*buf].len());
                    }
                    return Ok(k);
                }
            }
        }
        Ok(steps)
    }

    /// Takes the `steps` steps whose feeds `store` holds, and accounts for their metrics.
    fn run_materialised(&mut self, store: &mut Storage, steps: usize) -> Result<(), RunError> {
        let read = metrics::buffers_read(self);
        store.taps.resize_with(read.len(), Default::default);
        for ((buf, values), &b) in store.taps.iter_mut().zip(&read) {
            *buf = b;
            values.resize(steps * self.data[b].len(), 0.0);
        }
        self.hand_rates();
        let threads = self.optimizer_threads();
        let kernel: &mut Box<dyn StepKernel> = self.kernel.as_mut().expect("chunks run only with a kernel");
        let dt = self.model.protocol.dt;
        let mut between = BetweenSteps {
            optim: &mut self.optim,
            optimizer: &self.model.learning.optimizer,
            dt,
            consts: &self.consts,
            program: &self.program,
            skip: &self.absorbed,
            threads,
            bad: None,
        };
        let mut chunk = Chunk {
            first_step: self.step,
            steps,
            feeds: &store.feeds,
            taps: &mut store.taps,
            scanned: &self.scanned,
            between: self.learning.then_some(&mut between),
        };
        let done = kernel.run_steps(&mut self.data, &self.consts, dt, self.learning, &mut chunk)?;
        let bad = chunk.between.and_then(|b| b.bad);
        let complete = done == steps && kernel.all_finite();
        let first_feed_step = self.feed_step;
        self.step += done as u64;
        if self.feed.is_some() {
            self.feed_step += done;
        }
        if let Some((learnable, k)) = bad {
            return Err(self.optimizer_blow_up(learnable, k));
        }
        if !complete {
            // The kernel stopped after the step that blew up: find and name it.
            self.check_finite()?;
        }
        let mut metrics = std::mem::take(&mut self.metrics);
        for k in 0..done {
            let values = |b: usize| {
                let tap = read
                    .binary_search(&b)
                    .expect("the metrics read only the buffers copied out");
                let len = self.data[b].len();
                &store.taps[tap].1[k * len..(k + 1) * len]
            };
            let feed_steps = if self.feed.is_some() {
                first_feed_step + k + 1
            } else {
                0
            };
            metrics.observe_step(self, &values, feed_steps);
        }
        self.metrics = metrics;
        Ok(())
    }
}

//! A team: the calling thread and persistent helper threads that take each step together
//! (`compile_for_threads`). The helpers wait at a spinning [`Barrier`] for the calling thread
//! to start a step, a run of steps, or a Rust job; the generated code meets at the same kind of
//! barrier where its statements need it; the optimiser's step is shared in pieces
//! ([`crate::team_update`]).

use super::*;

/// The helper threads of a team: they live as long as the compiled step and run their share
/// of every step the calling thread starts.
pub(super) struct Helpers {
    shared: Arc<TeamState>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

/// What the calling thread hands its helpers for each step. The fields are written before
/// `start` and read after it: the barrier orders them.
struct TeamState {
    /// Every thread meets here to begin a step (or to stop).
    start: Barrier,
    /// The barrier the generated code meets at between statements and at the end of a step.
    statements: Barrier,
    stop: AtomicBool,
    ptrs: AtomicPtr<*mut f64>,
    consts: AtomicPtr<f64>,
    dt: AtomicU64,
    time: AtomicU64,
    learn: AtomicBool,
    /// Set while the team runs a Rust job ([`StepKernel::run_on_threads`]) instead of a step:
    /// the address of a `&(dyn Fn(usize) + Sync)` on the calling thread's stack.
    job: AtomicPtr<()>,
    /// Set while the team applies an optimiser step before the step
    /// ([`StepKernel::run_after_update`]): the address of a [`TeamUpdate`] on the calling
    /// thread's stack.
    update: AtomicPtr<()>,
    /// Per thread, the next of its optimiser pieces to be claimed.
    next: Box<[Counter]>,
    /// Set when the optimiser's pieces left a parameter value NaN or infinite: read by every
    /// thread once they meet after the update, then the step is not taken.
    update_failed: AtomicBool,
    /// Set while the team takes a run of steps ([`StepKernel::run_steps`]): the address of a
    /// [`TeamRun`] on the calling thread's stack.
    run: AtomicPtr<()>,
}

impl TeamState {
    /// Thread `t`'s part of the optimiser's step the calling thread handed the team, if any,
    /// and the meeting after it; whether the step goes ahead (no parameter came out NaN or
    /// infinite).
    fn apply_update(&self, t: usize) -> bool {
        let update = self.update.load(Ordering::Acquire);
        if !update.is_null() {
            // SAFETY: the calling thread stored the address of a `TeamUpdate` that lives until
            // every thread has met after it, below (`run_team`, `run_team_steps`).
            #[allow(unsafe_code)]
            let update = unsafe { &*(update as *const TeamUpdate) };
            update.apply(t);
        }
        self.statements.wait();
        !self.update_failed.load(Ordering::Acquire)
    }
}

/// A run of steps a team takes in one start (see `CompiledStep::run_team_steps`).
struct TeamRun {
    steps: usize,
    first_step: u64,
    /// The code's finiteness flags, one per thread.
    finite: *const f64,
    threads: usize,
}

impl TeamRun {
    /// Whether every value the code checked in the last step was finite (read after the
    /// threads met at its end).
    #[allow(unsafe_code)]
    fn finite(&self) -> bool {
        // SAFETY: `finite` is the address of the kernel's flags, one per thread, which outlive
        // the run; each thread's code wrote its flag before the meeting that ends the step.
        (0..self.threads).all(|t| unsafe { *self.finite.add(t * FLAG_STRIDE) } == 0.0)
    }
}

/// A helper's part of a [`TeamRun`]: each step after the optimiser's pieces of the one before
/// (when the calling thread prepared them) and the meeting after them, stopping where the
/// calling thread stops (a parameter or a checked value NaN or infinite).
fn take_run(shared: &TeamState, code: ThreadedStepFn, t: usize, scratch: &mut [f64], run: &TeamRun) {
    for k in 0..run.steps {
        if k > 0 && !shared.apply_update(t) {
            return;
        }
        let dt = f64::from_bits(shared.dt.load(Ordering::Acquire));
        code(
            shared.ptrs.load(Ordering::Acquire),
            shared.consts.load(Ordering::Acquire),
            dt,
            (run.first_step + k as u64) as f64 * dt,
            scratch.as_mut_ptr(),
            i64::from(shared.learn.load(Ordering::Acquire)),
            t as i64,
            &shared.statements,
        );
        if !run.finite() {
            return;
        }
    }
}

impl Helpers {
    /// The threads of the team: the helpers and the calling thread.
    pub(super) fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// Runs `job(t)` on every thread `t` of the team (the calling thread is 0) and returns once
    /// all have finished ([`StepKernel::run_on_threads`]).
    pub(super) fn run_job(&self, job: &(dyn Fn(usize) + Sync)) {
        let team = &self.shared;
        let job_ref: &(dyn Fn(usize) + Sync) = job;
        team.job
            .store((&raw const job_ref).cast::<()>().cast_mut(), Ordering::Release);
        team.start.wait();
        job(0);
        // Every helper has read the job and finished it once all are past this barrier.
        team.statements.wait();
        team.job.store(std::ptr::null_mut(), Ordering::Release);
    }

    /// Starts `threads − 1` helpers, each with its `scratch` (one per helper).
    pub(super) fn start(code: ThreadedStepFn, threads: usize, scratch: Vec<Vec<f64>>) -> Self {
        let shared = Arc::new(TeamState {
            start: Barrier::new(threads),
            statements: Barrier::new(threads),
            stop: AtomicBool::new(false),
            ptrs: AtomicPtr::new(std::ptr::null_mut()),
            consts: AtomicPtr::new(std::ptr::null_mut()),
            dt: AtomicU64::new(0),
            time: AtomicU64::new(0),
            learn: AtomicBool::new(true),
            job: AtomicPtr::new(std::ptr::null_mut()),
            update: AtomicPtr::new(std::ptr::null_mut()),
            next: (0..threads).map(|_| Counter::default()).collect(),
            update_failed: AtomicBool::new(false),
            run: AtomicPtr::new(std::ptr::null_mut()),
        });
        let handles = (1..threads)
            .zip(scratch)
            .map(|(t, mut scratch)| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    loop {
                        shared.start.wait();
                        if shared.stop.load(Ordering::Acquire) {
                            return;
                        }
                        let job = shared.job.load(Ordering::Acquire);
                        if !job.is_null() {
                            // SAFETY: `Helpers::run_job` stored the address of a job reference
                            // that lives until every thread has passed the barrier below.
                            #[allow(unsafe_code)]
                            let job = unsafe { &*(job as *const &(dyn Fn(usize) + Sync)) };
                            job(t);
                            shared.statements.wait();
                            continue;
                        }
                        let run = shared.run.load(Ordering::Acquire);
                        if !run.is_null() {
                            // SAFETY: `run_team_steps` stored the address of a `TeamRun` that
                            // lives until every thread has passed the barrier below.
                            #[allow(unsafe_code)]
                            let run = unsafe { &*(run as *const TeamRun) };
                            take_run(&shared, code, t, &mut scratch, run);
                            shared.statements.wait();
                            continue;
                        }
                        if !shared.update.load(Ordering::Acquire).is_null() && !shared.apply_update(t) {
                            // No step: meet where it would have ended.
                            shared.statements.wait();
                            continue;
                        }
                        let ptrs = shared.ptrs.load(Ordering::Acquire);
                        let consts = shared.consts.load(Ordering::Acquire);
                        let dt = f64::from_bits(shared.dt.load(Ordering::Acquire));
                        let time = f64::from_bits(shared.time.load(Ordering::Acquire));
                        let learn = i64::from(shared.learn.load(Ordering::Acquire));
                        code(
                            ptrs,
                            consts,
                            dt,
                            time,
                            scratch.as_mut_ptr(),
                            learn,
                            t as i64,
                            &shared.statements,
                        );
                    }
                })
            })
            .collect();
        Helpers { shared, handles }
    }
}

impl Drop for CompiledStep {
    fn drop(&mut self) {
        if let Some(h) = self.helpers.take() {
            h.shared.stop.store(true, Ordering::Release);
            h.shared.start.wait();
            for handle in h.handles {
                let _ = handle.join();
            }
        }
    }
}

/// Where the threads of a step meet between statements. They spin (then yield, then nap)
/// rather than sleep on a lock: a step has dozens of statements, and waking a sleeping thread
/// costs more than most of them.
pub(super) struct Barrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl Barrier {
    fn new(threads: usize) -> Self {
        Barrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Returns once every thread of the team has called it; what each thread wrote before is
    /// visible to all after.
    fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            // Spin briefly, then yield (with more threads than free cores the thread being
            // waited for may need this core), then nap: a helper waiting for the next step
            // while the caller does other work should not hold a core.
            let mut waits = 0u32;
            while self.generation.load(Ordering::Acquire) == generation {
                waits = waits.saturating_add(1);
                if waits < 2_000 {
                    std::hint::spin_loop();
                } else if waits < 20_000 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            }
        }
    }
}

/// The barrier shim the generated code calls between statements when run by a team.
#[allow(unsafe_code)]
pub(super) extern "C" fn gle_barrier(barrier: *const Barrier) {
    // SAFETY: the generated code passes the pointer it was called with, which
    // `CompiledStep::run` made from a `Barrier` that outlives every thread of the step.
    unsafe { (*barrier).wait() };
}

impl CompiledStep {
    /// [`StepKernel::run_steps`] for a team: the threads start once and take the steps in a
    /// row. Before each step after the first, they apply the optimiser's step that the calling
    /// thread prepared while they took the step before (its pieces as [`Self::run_team`] shares
    /// them) and meet; meanwhile the calling thread also makes the last step's exchanges, copies
    /// its taps and writes the next step's feeds, so the helpers do not wait for that. They
    /// stop together after a step that left a checked value NaN or infinite, or before the step
    /// an update left a parameter so (as [`gle_runtime::run_step_by_step`] does); the steps of a
    /// program with buffers the simulation scans itself go one call at a time.
    #[allow(unsafe_code)]
    pub(super) fn run_team_steps(
        &mut self,
        code: ThreadedStepFn,
        data: &mut [Vec<f64>],
        consts: &[f64],
        dt: f64,
        learn: bool,
        chunk: &mut Chunk,
    ) -> Result<usize, RunError> {
        let steps = chunk.steps;
        // While the helpers update parameters, the calling thread copies taps and feeds and
        // makes exchanges: these must not touch a parameter or a gradient.
        let learnables = &self.learnable_buffers;
        let apart = chunk
            .feeds
            .iter()
            .chain(chunk.taps.iter())
            .map(|(b, _)| *b)
            .all(|b| !learnables.contains(&b))
            && self
                .swaps
                .iter()
                .all(|(a, b)| !learnables.contains(a) && !learnables.contains(b));
        if !chunk.scanned.is_empty() || steps <= 1 || !apart {
            return gle_runtime::run_step_by_step(self, data, consts, dt, learn, chunk);
        }
        let Some(team) = self.helpers.as_ref().map(|h| Arc::clone(&h.shared)) else {
            return Err(RunError::new("JIT: a team's step has no helper threads"));
        };
        for (buf, values) in chunk.feeds.iter().chain(chunk.taps.iter()) {
            let len = *self.lens.get(*buf).ok_or_else(mismatched_run)?;
            if len.checked_mul(steps) != Some(values.len()) {
                return Err(mismatched_run());
            }
        }
        let pieces = std::mem::take(&mut self.pieces);
        let mut storage = std::mem::take(&mut self.update_storage);
        let mut between = chunk.between.as_deref_mut();
        if let Some(between) = between.as_deref_mut() {
            let fits = pieces.fit(&between.prepare(), data);
            between.withdraw();
            if !fits {
                (self.pieces, self.update_storage) = (pieces, storage);
                return Err(mismatched_update());
            }
        }
        let feeds = chunk.feeds;
        gle_runtime::write_feeds(feeds, data, 0);
        if let Err(e) = self.point_at(data) {
            (self.pieces, self.update_storage) = (pieces, storage);
            return Err(e);
        }
        let run = TeamRun {
            steps,
            first_step: chunk.first_step,
            finite: self.finite.as_ptr(),
            threads: self.finite.len() / FLAG_STRIDE,
        };
        let consts = consts_address(consts);
        team.ptrs.store(self.ptrs.as_ptr().cast_mut(), Ordering::Release);
        team.consts.store(consts.cast_mut(), Ordering::Release);
        team.dt.store(dt.to_bits(), Ordering::Release);
        team.learn.store(learn, Ordering::Release);
        team.update.store(std::ptr::null_mut(), Ordering::Release);
        team.run
            .store(std::ptr::from_ref(&run).cast::<()>().cast_mut(), Ordering::Release);
        team.start.wait();
        // Steps taken, and how many of them have had their exchanges made and taps copied.
        let (mut taken, mut finished) = (0, 0);
        let mut update: Option<TeamUpdate> = None;
        for k in 0..steps {
            if k > 0 {
                finish_step(&self.swaps, data, chunk.taps, k - 1);
                finished = k;
                gle_runtime::write_feeds(feeds, data, k);
                // The exchanges moved no buffer's length: the lengths are still those checked.
                self.refill_ptrs(data);
                team.ptrs.store(self.ptrs.as_ptr().cast_mut(), Ordering::Release);
                if let Some(update) = &update {
                    update.apply(0);
                }
                team.statements.wait();
                if let Some(done) = update.take() {
                    let (bad, kept) = done.finish();
                    storage = kept;
                    let between = between.as_deref_mut().expect("an update comes from the optimiser");
                    if !between.finish(bad) {
                        // The step is not taken: its inputs leave the buffers as the last step did.
                        gle_runtime::write_feeds(feeds, data, k - 1);
                        break;
                    }
                }
            }
            // The optimiser's step after this step, applied before the next.
            if let Some(between) = between.as_deref_mut().filter(|_| k + 1 < steps) {
                let next = TeamUpdate::new(
                    between.prepare(),
                    data,
                    &pieces,
                    std::mem::take(&mut storage),
                    &team.next,
                    &team.update_failed,
                );
                let next = update.insert(next);
                team.update
                    .store(std::ptr::from_ref(next).cast::<()>().cast_mut(), Ordering::Release);
            } else {
                team.update.store(std::ptr::null_mut(), Ordering::Release);
            }
            // SAFETY: as in `run_team`; besides, the calling thread changes the buffers (its
            // exchanges, taps and feeds) and the pointers only between the meeting that ends
            // a step and the one after the update, when no thread runs the code.
            code(
                self.ptrs.as_ptr(),
                consts,
                dt,
                (chunk.first_step + k as u64) as f64 * dt,
                self.scratch.as_mut_ptr(),
                i64::from(learn),
                0,
                &team.statements,
            );
            taken = k + 1;
            if !run.finite() {
                if let Some(withdrawn) = update.take() {
                    storage = withdrawn.finish().1;
                    between
                        .as_deref_mut()
                        .expect("an update comes from the optimiser")
                        .withdraw();
                }
                break;
            }
        }
        // The helpers are done with the run, the update and the pointers once all meet here.
        team.statements.wait();
        team.run.store(std::ptr::null_mut(), Ordering::Release);
        team.update.store(std::ptr::null_mut(), Ordering::Release);
        if finished < taken {
            finish_step(&self.swaps, data, chunk.taps, finished);
        }
        (self.pieces, self.update_storage) = (pieces, storage);
        Ok(taken)
    }
    /// A team's step (see [`StepKernel::run`]), after the optimiser's step `update` when given:
    /// the threads share the update ([`team_update`]), meet, and take the step unless the
    /// update left a parameter value NaN or infinite, whose `(learnable, element)` it returns.
    #[allow(unsafe_code)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_team(
        &mut self,
        code: ThreadedStepFn,
        data: &mut [Vec<f64>],
        consts: &[f64],
        dt: f64,
        time: f64,
        learn: bool,
        update: Option<StepUpdate>,
    ) -> Result<Option<(usize, usize)>, RunError> {
        self.point_at(data)?;
        let Some(helpers) = &self.helpers else {
            return Err(RunError::new("JIT: a team's step has no helper threads"));
        };
        let team = &helpers.shared;
        let shared = match update {
            Some(update) if self.pieces.fit(&update, data) => {
                let storage = std::mem::take(&mut self.update_storage);
                Some(TeamUpdate::new(
                    update,
                    data,
                    &self.pieces,
                    storage,
                    &team.next,
                    &team.update_failed,
                ))
            }
            Some(_) => return Err(mismatched_update()),
            None => None,
        };
        let consts = consts_address(consts);
        let ptrs = self.ptrs.as_ptr();
        team.ptrs.store(ptrs.cast_mut(), Ordering::Release);
        team.consts.store(consts.cast_mut(), Ordering::Release);
        team.dt.store(dt.to_bits(), Ordering::Release);
        team.time.store(time.to_bits(), Ordering::Release);
        team.learn.store(learn, Ordering::Release);
        let address = shared.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
        team.update.store(address.cast::<()>().cast_mut(), Ordering::Release);
        team.start.wait();
        let mut stepped = true;
        if let Some(shared) = &shared {
            shared.apply(0);
            team.statements.wait();
            stepped = !team.update_failed.load(Ordering::Acquire);
        }
        if stepped {
            // SAFETY: the code was generated for exactly these buffer lengths (checked by
            // `point_at`) and only indexes buffers within them; constants are read at indices
            // below the model's constant count, which `consts` holds; each scratch area has the
            // size the code was compiled for and is owned by its thread, as is each entry of
            // `finite` (one per thread). Either every thread writes disjoint parts of each
            // statement's output and all meet at the barrier between any two items that touch
            // a buffer across rows (`schedule::team_schedule`), or each thread runs whole
            // statements that touch no buffer another thread's statements write
            // (`schedule::statement_owners`); all meet after the optimiser's pieces and at the
            // end of the step. So no element is written by one thread while another reads or
            // writes it, and the helpers are done with the buffers (and the update) when the
            // step ends.
            code(
                ptrs,
                consts,
                dt,
                time,
                self.scratch.as_mut_ptr(),
                i64::from(learn),
                0,
                &team.statements,
            );
        } else {
            // No step: meet where it would have ended.
            team.statements.wait();
        }
        team.update.store(std::ptr::null_mut(), Ordering::Release);
        if stepped {
            exchange(&self.swaps, data);
        }
        let Some(shared) = shared else {
            return Ok(None);
        };
        let (bad, storage) = shared.finish();
        self.update_storage = storage;
        Ok(bad)
    }
}

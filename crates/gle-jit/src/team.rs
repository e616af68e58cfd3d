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
    /// The barrier the generated code meets at between statements, and the threads at the end
    /// of a step.
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
    update_failed: Flag,
    /// Set when a thread's step left a value it checks NaN or infinite: read by every thread
    /// once they meet at the end of the step.
    step_failed: Flag,
    /// Set while the team takes a run of steps ([`StepKernel::run_steps`]): the address of a
    /// [`TeamRun`] on the calling thread's stack.
    run: AtomicPtr<()>,
}

/// A flag on a cache line of its own, written only when it is raised or lowered: reading it
/// after every meeting then costs nothing on a host whose cores share no cache.
#[repr(align(64))]
#[derive(Default)]
struct Flag(AtomicBool);

impl Flag {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Lowers the flag (before the threads start: the start barrier orders it).
    fn lower(&self) {
        if self.0.load(Ordering::Relaxed) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
}

impl TeamState {
    /// Thread `t`'s part of the optimiser's step the calling thread handed the team, if any,
    /// and the meeting after it; whether the step goes ahead (no parameter came out NaN or
    /// infinite).
    fn apply_update(&self, t: usize) -> bool {
        let update = self.update.load(Ordering::Acquire);
        if !update.is_null() {
            // SAFETY: the calling thread stored the address of a `TeamUpdate` that lives until
            // every thread has met after it, below (`run_team`).
            #[allow(unsafe_code)]
            let update = unsafe { &*(update as *const TeamUpdate) };
            update.apply(t, 0);
        }
        self.statements.wait();
        !self.update_failed.is_set()
    }

    /// The meeting at the end of a step, which the thread's code left with its finiteness
    /// `flag` (0 when every value it checked was finite); whether every thread's was.
    fn end_step(&self, flag: f64) -> bool {
        if flag != 0.0 {
            self.step_failed.raise();
        }
        self.statements.wait();
        !self.step_failed.is_set()
    }
}

/// A run of steps a team takes in one start (see `CompiledStep::run_team_steps`).
struct TeamRun<'a> {
    steps: usize,
    first_step: u64,
    /// The code's finiteness flags, one per thread.
    finite: *const f64,
    /// The buffer pointers the run's first step reads. Each helper keeps a copy of its own and
    /// makes the program's exchanges in it after every step, as the calling thread makes them
    /// in the buffers: no thread then reads a line of pointers another has written.
    ptrs: &'a [*mut f64],
    /// The program's exchanges.
    swaps: &'a [(usize, usize)],
    /// The optimiser's steps the calling thread posts during every step but the last (during
    /// step `k`, in slot `(k + 1) % 2`), which the threads apply before the next (none when
    /// not learning).
    update: Option<&'a TeamUpdate<'a>>,
}

/// A helper's part of a [`TeamRun`]: each step after the optimiser's pieces of the one before
/// (when the calling thread posted them) and the meeting after them, stopping where the
/// calling thread stops (a parameter or a checked value NaN or infinite). `ptrs` is the
/// helper's own copy of the buffer pointers.
fn take_run(
    shared: &TeamState,
    code: ThreadedStepFn,
    t: usize,
    scratch: &mut [f64],
    ptrs: &mut Vec<*mut f64>,
    run: &TeamRun,
) {
    ptrs.clear();
    ptrs.extend_from_slice(run.ptrs);
    let dt = f64::from_bits(shared.dt.load(Ordering::Acquire));
    let consts = shared.consts.load(Ordering::Acquire);
    let learn = i64::from(shared.learn.load(Ordering::Acquire));
    for k in 0..run.steps {
        if k > 0 {
            exchange_ptrs(run.swaps, ptrs);
            if let Some(update) = run.update {
                update.apply(t, k % 2);
            }
            shared.statements.wait();
            if shared.update_failed.is_set() {
                return;
            }
        }
        code(
            ptrs.as_ptr(),
            consts,
            dt,
            (run.first_step + k as u64) as f64 * dt,
            scratch.as_mut_ptr(),
            learn,
            t as i64,
            &shared.statements,
        );
        // SAFETY: `finite` is the address of the kernel's flags, one per thread, which outlive
        // the run; this thread's code wrote its own.
        #[allow(unsafe_code)]
        let flag = unsafe { *run.finite.add(t * FLAG_STRIDE) };
        if !shared.end_step(flag) {
            return;
        }
    }
}

/// Makes the program's exchanges in a thread's copy of the buffer pointers.
fn exchange_ptrs(swaps: &[(usize, usize)], ptrs: &mut [*mut f64]) {
    for &(dst, src) in swaps {
        ptrs.swap(dst, src);
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
            update_failed: Flag::default(),
            step_failed: Flag::default(),
            run: AtomicPtr::new(std::ptr::null_mut()),
        });
        let handles = (1..threads)
            .zip(scratch)
            .map(|(t, mut scratch)| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    // The helper's copy of the buffer pointers in a run of steps.
                    let mut ptrs = Vec::new();
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
                            take_run(&shared, code, t, &mut scratch, &mut ptrs, run);
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
                        shared.statements.wait();
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
/// costs more than most of them. On a cache line of its own, which nothing else written during
/// a step shares.
#[repr(align(64))]
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
    /// thread posted while they took the step before (its pieces as [`Self::run_team`] shares
    /// them) and meet; meanwhile the calling thread also makes the last step's exchanges, copies
    /// its taps and writes the next step's feeds, so the helpers do not wait for that. They
    /// stop together after a step that left a checked value NaN or infinite, or before the step
    /// an update left a parameter so (as [`gle_runtime::run_step_by_step`] does); the steps of a
    /// program with buffers the simulation scans itself go one call at a time.
    ///
    /// Between two meetings a thread reads only what it wrote or what no thread writes during
    /// the run (its pointers, the posted update once it stops changing), besides the values
    /// the statements exchange: on a host whose cores share no cache, every other line a
    /// thread wrote would cross to the other core each step.
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
        let mut between = chunk.between.as_deref_mut();
        if let Some(between) = between.as_deref_mut() {
            let fits = self.pieces.fit(&between.prepare(), data);
            between.withdraw();
            if !fits {
                return Err(mismatched_update());
            }
        }
        let feeds = chunk.feeds;
        gle_runtime::write_feeds(feeds, data, 0);
        self.point_at(data)?;
        let pieces = std::mem::take(&mut self.pieces);
        let update = between.is_some().then(|| {
            TeamUpdate::new(
                &pieces,
                std::mem::take(&mut self.update_storage),
                &team.next,
                &team.update_failed.0,
            )
        });
        let ptrs = self.ptrs.clone();
        let run = TeamRun {
            steps,
            first_step: chunk.first_step,
            finite: self.finite.as_ptr(),
            ptrs: &ptrs,
            swaps: &self.swaps,
            update: update.as_ref(),
        };
        let consts = consts_address(consts);
        team.consts.store(consts.cast_mut(), Ordering::Release);
        team.dt.store(dt.to_bits(), Ordering::Release);
        team.learn.store(learn, Ordering::Release);
        team.update.store(std::ptr::null_mut(), Ordering::Release);
        team.step_failed.lower();
        team.run
            .store(std::ptr::from_ref(&run).cast::<()>().cast_mut(), Ordering::Release);
        team.start.wait();
        // Steps taken, and how many of them have had their exchanges made and taps copied.
        let (mut taken, mut finished) = (0, 0);
        for k in 0..steps {
            // Whether the optimiser's step after this step, applied before the next, is posted
            // (in slot `(k + 1) % 2`, while the threads apply the one in slot `k % 2`).
            let mut posted = false;
            let mut post_next = |between: &mut Option<&mut gle_runtime::BetweenSteps<'_>>, data: &mut [Vec<f64>]| {
                if let (Some(between), Some(update)) = (between.as_deref_mut().filter(|_| k + 1 < steps), &update) {
                    // SAFETY: the threads apply the other slot in this step, and applied this
                    // one last before the meeting after the last step's update.
                    unsafe { update.post((k + 1) % 2, between.prepare(), data) };
                    posted = true;
                }
            };
            if k > 0 {
                finish_step(&self.swaps, data, chunk.taps, k - 1);
                finished = k;
                gle_runtime::write_feeds(feeds, data, k);
                // The exchanges moved no buffer's length: the lengths are still those checked.
                exchange_ptrs(&self.swaps, &mut self.ptrs);
                if let Some(update) = &update {
                    update.apply(0, k % 2);
                }
                // Before the meeting: the calling thread, which has the lighter share, would
                // otherwise wait there.
                post_next(&mut between, data);
                team.statements.wait();
                if let Some(done) = &update {
                    done.reset_claims();
                    let between = between.as_deref_mut().expect("an update comes from the optimiser");
                    if !between.finish(done.take_bad()) {
                        if posted {
                            between.withdraw();
                        }
                        // The step is not taken: its inputs leave the buffers as the last step did.
                        gle_runtime::write_feeds(feeds, data, k - 1);
                        break;
                    }
                }
            } else {
                post_next(&mut between, data);
            }
            // SAFETY: as in `run_team`; besides, the calling thread changes the buffers (its
            // exchanges, taps and feeds) and its pointers only between the meeting that ends
            // a step and the one after the update, when no thread runs the code, and each
            // helper reads pointers of its own, exchanged as the buffers are.
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
            if !team.end_step(self.finite[0]) {
                if posted {
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
        if finished < taken {
            finish_step(&self.swaps, data, chunk.taps, finished);
        }
        if let Some(update) = update {
            self.update_storage = update.finish();
        }
        self.pieces = pieces;
        Ok(taken)
    }

    /// [`StepKernel::apply_update`]: a team whose pieces [fit](Pieces::fit) `update` shares it
    /// as it shares the update before a step ([`team_update`]), each thread updating the
    /// parameters its own statements read; otherwise the optimiser splits it.
    pub(super) fn update_on_team(&mut self, data: &mut [Vec<f64>], update: StepUpdate) -> Option<(usize, usize)> {
        let fits = self.pieces.fit(&update, data);
        let Some(helpers) = self.helpers.as_ref().filter(|_| fits) else {
            return update.apply(data, &mut |job| self.run_on_threads(job));
        };
        let team = &helpers.shared;
        let storage = std::mem::take(&mut self.update_storage);
        let shared = TeamUpdate::new(&self.pieces, storage, &team.next, &team.update_failed.0);
        // SAFETY: no thread applies it before the job below starts.
        #[allow(unsafe_code)]
        unsafe {
            shared.post(0, update, data);
        }
        helpers.run_job(&|t| shared.apply(t, 0));
        let bad = shared.take_bad();
        self.update_storage = shared.finish();
        bad
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
                let shared = TeamUpdate::new(&self.pieces, storage, &team.next, &team.update_failed.0);
                // SAFETY: no thread applies it before the start barrier below.
                unsafe { shared.post(0, update, data) };
                Some(shared)
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
            shared.apply(0, 0);
            team.statements.wait();
            stepped = !team.update_failed.is_set();
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
        }
        // The end of the step (where it would have ended, when not taken).
        team.statements.wait();
        team.update.store(std::ptr::null_mut(), Ordering::Release);
        if stepped {
            exchange(&self.swaps, data);
        }
        let Some(shared) = shared else {
            return Ok(None);
        };
        let bad = shared.take_bad();
        self.update_storage = shared.finish();
        Ok(bad)
    }
}

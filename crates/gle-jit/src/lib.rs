//! The Cranelift JIT of glec: a step program compiled to one native function.
//!
//! The function runs every statement of a step and the commits, for the whole batch, with the
//! same arithmetic in the same order as the reference interpreter (`gle-runtime`), so both agree
//! to the last bit. Elementwise functions (`tanh`, `exp`, `softplus`, …) are calls to the same
//! Rust functions the interpreter uses (`extern "C"` shims), so they agree too; the dense
//! products are calls of [`products`], Rust loops built for the CPU's widest vectors that sum
//! in the interpreter's order. Before every call
//! the buffers handed to the native code are checked against the sizes it was compiled for, so
//! nothing a `.gle` file says can make it read or write out of bounds.
//!
//! This is the only crate of the workspace that depends on Cranelift.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, BlockArg, Endianness, FuncRef, InstBuilder, MemFlagsData, Signature, SourceLoc, Value, types,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use emit::{Emitter, Team, VectorPool};
use gle_derive::program::{Layout, Program, Stmt};
use gle_derive::sym::{Fun, Id, Leaf, Node, apply};
use gle_ir::builtins::Builtin;
use gle_runtime::optim::StepUpdate;
use gle_runtime::{Chunk, RunError, StepKernel};
use schedule::Item;
pub use schedule::{MAX_WHOLE_EXCESS, TeamSplit};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use team::{Barrier, Helpers, gle_barrier};
use team_update::{Counter, Pieces, Storage, TeamUpdate};

mod emit;
pub mod products;
mod schedule;
pub mod tanh_rows;
mod team;
mod team_update;

/// Why a program could not be compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct JitError(pub String);

impl std::fmt::Display for JitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JIT compilation failed: {}", self.0)
    }
}

/// The native signature of a compiled run of steps: buffer pointers, constants, dt, the first
/// step's time, scratch, whether gradients are computed (0 or 1), the first step's index, the
/// number of steps (at least one) and their [plan](Plan); returns the steps taken.
type StepFn = extern "C" fn(*const *mut f64, *const f64, f64, f64, *mut f64, i64, i64, i64, *const i64) -> i64;

/// What the native loop of [`StepFn`] does around each step, as `i64` words: the numbers of
/// feeds, taps and scans, the address of a [`BetweenSteps`] (0 for none), then one `(buffer,
/// values, address)` triple per feed, tap and scan in that order. Before every step but the
/// first, the loop calls [`gle_between_steps`] with the `BetweenSteps`, and stops if it returns
/// 0. A feed's values for step `k` (`values` of them, the buffer's length) are copied
/// from `address + 8·k·values` into the buffer before the step; a tap's buffer is copied to that
/// place after the step (and its exchanges); a scanned buffer is checked for NaN and Inf after
/// the step (its address is unused), and the loop stops after a step that left a non-finite
/// value in one, or in a buffer the code checks itself.
type Plan = Vec<i64>;

/// The plan of a single step: nothing fed, copied or scanned.
const SINGLE_STEP: [i64; 4] = [0; 4];

/// The work between two steps of a run ([`Chunk::between`]), called by the code through
/// [`gle_between_steps`].
struct BetweenSteps<'a, 'b> {
    work: &'a mut gle_runtime::BetweenSteps<'b>,
    /// The simulation's buffers.
    data: *mut Vec<f64>,
    len: usize,
    /// The program's exchanges, which the code makes in its pointers after every step.
    swaps: &'a [(usize, usize)],
    /// Steps whose exchanges were made in `data` too.
    exchanged: usize,
}

/// Makes the last step's exchanges in the simulation's buffers (so that they are where the
/// code's pointers say), then runs the work between two steps; returns 0 to stop the run.
#[allow(unsafe_code)]
extern "C" fn gle_between_steps(between: *mut BetweenSteps<'_, '_>) -> i64 {
    // SAFETY: the code passes the address `run_steps` put in the plan, of a `BetweenSteps` that
    // lives until the code returns, whose `data` and `len` are those of the buffers `run_steps`
    // was given (not used otherwise while the code runs); the code does not touch the buffers
    // while this runs, and loads their addresses from its pointers again afterwards.
    let between = unsafe { &mut *between };
    let data = unsafe { std::slice::from_raw_parts_mut(between.data, between.len) };
    exchange(between.swaps, data);
    between.exchanged += 1;
    // The code runs on one thread: so does the work.
    i64::from(between.work.step(data, &mut |job| job(0)))
}

/// The signature of a step compiled for several threads: [`StepFn`]'s arguments, then the
/// calling thread's index and the barrier the threads meet at between statements.
type ThreadedStepFn = extern "C" fn(*const *mut f64, *const f64, f64, f64, *mut f64, i64, i64, *const Barrier);

/// The compiled function: for one thread, or for a team of threads that share each statement.
#[derive(Clone, Copy)]
enum Code {
    Single(StepFn),
    Threaded(ThreadedStepFn),
}

/// A step program compiled to native code for a fixed batch size.
pub struct CompiledStep {
    /// Keeps the code alive.
    _module: JITModule,
    code: Code,
    /// Expected length of every buffer.
    lens: Vec<usize>,
    /// The function's Cranelift IR, rendered as text only on request (it takes ~10 % of
    /// MNIST-1D's compile time).
    function: cranelift_codegen::ir::Function,
    /// Scratch space for the buffer pointers.
    ptrs: Vec<*mut f64>,
    /// Scratch space for materialised function results (see the `Map` lowering) of the calling
    /// thread; each helper thread owns its own.
    scratch: Vec<f64>,
    /// The helper threads of a team (none for a single thread).
    helpers: Option<Helpers>,
    /// The vector constants the code reads.
    pool: VectorPool,
    /// How often a team's threads meet at the barrier in a step (0 for one thread).
    meetings: usize,
    /// Per statement, the thread of a team that runs it whole (`None` where each statement's
    /// rows are split between the threads, and for one thread).
    owners: Option<Vec<usize>>,
    /// How many `W·x` statements share their pass over W with other statements.
    row_passes: usize,
    /// How many of them compute `Wᵀ·e` too.
    row_passes_with_wt_e: usize,
    /// The learnables whose SGD update the code applies (see [`compile_absorbing`]).
    absorbed: Vec<usize>,
    /// Their rates for the next step, read by the code (at least one entry, for its address).
    rates: Box<[f64]>,
    /// The program's commits by exchange: the code exchanges the buffer pointers it holds after
    /// each step, the Rust side the buffers after the code returns.
    swaps: Vec<(usize, usize)>,
    /// Reused storage of the plan of a run of steps.
    plan: Plan,
    /// The watched buffers whose values the code checks as it computes them.
    checked: Vec<usize>,
    /// Per thread, at entry `thread·FLAG_STRIDE`: 0 after a step whose checked values were all
    /// finite (NaN otherwise); the entries between are not used.
    finite: Box<[f64]>,
    /// How a team shares an optimiser step it applies before a step.
    pieces: Pieces,
    /// Reused storage of such a step.
    update_storage: Storage,
    /// The parameter and gradient buffers of the program's learnables.
    learnable_buffers: Vec<usize>,
}

// The generated code only touches the buffers passed to each call; the module is owned.
#[allow(unsafe_code)]
// SAFETY: `CompiledStep` owns its code; the raw pointers in `ptrs` are scratch space refilled
// from the `&mut` buffers of each call and never dereferenced outside one.
unsafe impl Send for CompiledStep {}

/// `len` zeros followed by spare capacity as the simulation's buffers are
/// ([`gle_runtime::BUFFER_GUARD`]: each thread's scratch space is written by that thread only,
/// and the threads' lie one after another), or an error when they cannot be allocated.
fn zeroed(len: usize) -> Result<Vec<f64>, JitError> {
    let mut values = Vec::new();
    values
        .try_reserve_exact(len.saturating_add(gle_runtime::BUFFER_GUARD))
        .map_err(|_| {
            JitError(format!(
                "cannot allocate the {:.1} GB of scratch space the step's shapes need",
                len as f64 * 8.0 / 1e9
            ))
        })?;
    values.resize(len, 0.0);
    Ok(values)
}

/// Makes the program's exchanges (`swaps`) in `data`.
fn exchange(swaps: &[(usize, usize)], data: &mut [Vec<f64>]) {
    for &(dst, src) in swaps {
        data.swap(dst, src);
    }
}

/// Ends step `k` of a team's run: its exchanges in `data`, then its taps copied out.
fn finish_step(swaps: &[(usize, usize)], data: &mut [Vec<f64>], taps: &mut [(usize, Vec<f64>)], k: usize) {
    exchange(swaps, data);
    gle_runtime::copy_taps(taps, data, k);
}

/// The error of a run of steps whose buffers are not those the code was compiled for.
fn mismatched_run() -> RunError {
    RunError::new("JIT: a run of steps does not match the compiled program")
}

/// The error of an optimiser step whose buffers are not those the code was compiled for.
fn mismatched_update() -> RunError {
    RunError::new("JIT: an optimiser step does not match the compiled program")
}

/// The address of the constants handed to the code (of a dummy when there are none).
fn consts_address(consts: &[f64]) -> *const f64 {
    static NONE: [f64; 1] = [0.0];
    if consts.is_empty() {
        NONE.as_ptr()
    } else {
        consts.as_ptr()
    }
}

impl CompiledStep {
    /// Checks `data` against the buffer lengths the code was compiled for and fills the
    /// pointers the code reads: every buffer, then the vector constants, the rates and the
    /// finiteness flags.
    fn point_at(&mut self, data: &mut [Vec<f64>]) -> Result<(), RunError> {
        if data.len() != self.lens.len() {
            return Err(RunError::new(
                "JIT: the simulation's buffers do not match the compiled program",
            ));
        }
        for (k, (buf, len)) in data.iter().zip(&self.lens).enumerate() {
            if buf.len() != *len {
                return Err(RunError::new(format!(
                    "JIT: buffer {k} has {} values, the code expects {len}",
                    buf.len()
                )));
            }
        }
        self.refill_ptrs(data);
        Ok(())
    }

    /// Fills the pointers the code reads from `data`, whose lengths [`Self::point_at`] checked.
    fn refill_ptrs(&mut self, data: &mut [Vec<f64>]) {
        self.ptrs.clear();
        self.ptrs.extend(data.iter_mut().map(|b| b.as_mut_ptr()));
        self.ptrs.push(self.pool.lanes.as_ptr().cast::<f64>().cast_mut());
        self.ptrs.push(self.rates.as_mut_ptr());
        self.ptrs.push(self.finite.as_mut_ptr());
    }

    /// How often the threads of a team wait for each other in one step (0 for one thread).
    pub fn meetings_per_step(&self) -> usize {
        self.meetings
    }

    /// Per statement of the program, the thread of the team that runs it whole, where the team
    /// runs whole statements ([`TeamSplit`]); `None` where it splits their rows, and for one
    /// thread.
    pub fn statement_threads(&self) -> Option<&[usize]> {
        self.owners.as_deref()
    }

    /// How many `W·x` statements share their pass over W with the `Wᵀ·e` or an absorbed update
    /// of that W, or both (one thread, batch 1; see [`compile_absorbing`]).
    pub fn row_passes(&self) -> usize {
        self.row_passes
    }

    /// How many of the [`Self::row_passes`] compute `Wᵀ·e` too.
    pub fn row_passes_with_wt_e(&self) -> usize {
        self.row_passes_with_wt_e
    }

    /// The Cranelift IR text of the compiled function (rendered on each call).
    pub fn clif(&self) -> String {
        self.function.display().to_string()
    }
}

impl StepKernel for CompiledStep {
    #[allow(unsafe_code)]
    fn run(&mut self, data: &mut [Vec<f64>], consts: &[f64], dt: f64, time: f64, learn: bool) -> Result<(), RunError> {
        let code = match self.code {
            Code::Single(code) => code,
            Code::Threaded(code) => return self.run_team(code, data, consts, dt, time, learn, None).map(|_| ()),
        };
        self.point_at(data)?;
        // SAFETY: the code was generated for exactly these buffer lengths (checked above) and
        // only indexes buffers within them; constants are read at indices below the model's
        // constant count, which `consts` holds; the scratch area has the size the code was
        // compiled for; the plan is a single step's.
        code(
            self.ptrs.as_ptr(),
            consts_address(consts),
            dt,
            time,
            self.scratch.as_mut_ptr(),
            i64::from(learn),
            0,
            1,
            SINGLE_STEP.as_ptr(),
        );
        exchange(&self.swaps, data);
        Ok(())
    }

    fn apply_update(&mut self, data: &mut [Vec<f64>], update: StepUpdate) -> Option<(usize, usize)> {
        self.update_on_team(data, update)
    }

    fn run_after_update(
        &mut self,
        data: &mut [Vec<f64>],
        consts: &[f64],
        dt: f64,
        time: f64,
        learn: bool,
        update: StepUpdate,
    ) -> Result<Option<(usize, usize)>, RunError> {
        match self.code {
            Code::Threaded(code) => self.run_team(code, data, consts, dt, time, learn, Some(update)),
            Code::Single(_) => gle_runtime::update_then_run(self, data, consts, dt, time, learn, update),
        }
    }

    #[allow(unsafe_code)]
    fn run_steps(
        &mut self,
        data: &mut [Vec<f64>],
        consts: &[f64],
        dt: f64,
        learn: bool,
        chunk: &mut Chunk,
    ) -> Result<usize, RunError> {
        let code = match self.code {
            Code::Single(code) => code,
            Code::Threaded(code) => return self.run_team_steps(code, data, consts, dt, learn, chunk),
        };
        if chunk.steps == 0 {
            return Ok(0);
        }
        self.point_at(data)?;
        let first = i64::try_from(chunk.first_step).map_err(|_| mismatched_run())?;
        let steps = i64::try_from(chunk.steps).map_err(|_| mismatched_run())?;
        self.plan.clear();
        let counts = [chunk.feeds.len(), chunk.taps.len(), chunk.scanned.len()];
        self.plan.extend(counts.iter().map(|&c| c as i64));
        let (data_address, len) = (data.as_mut_ptr(), data.len());
        let mut between = chunk.between.as_deref_mut().map(|work| BetweenSteps {
            work,
            data: data_address,
            len,
            swaps: &self.swaps,
            exchanged: 0,
        });
        let between_address = between.as_mut().map_or(0, |b| std::ptr::from_mut(b) as i64);
        self.plan.push(between_address);
        let feeds = chunk.feeds.iter().map(|(b, v)| (*b, v.len(), v.as_ptr()));
        let taps = chunk
            .taps
            .iter_mut()
            .map(|(b, v)| (*b, v.len(), v.as_mut_ptr().cast_const()));
        for (buf, values, address) in feeds.chain(taps) {
            let len = *self.lens.get(buf).ok_or_else(mismatched_run)?;
            if len.checked_mul(chunk.steps) != Some(values) {
                return Err(mismatched_run());
            }
            self.plan.extend([buf as i64, len as i64, address as i64]);
        }
        for &buf in chunk.scanned {
            let len = *self.lens.get(buf).ok_or_else(mismatched_run)?;
            self.plan.extend([buf as i64, len as i64, 0]);
        }
        let time = chunk.first_step as f64 * dt;
        // SAFETY: as in `run`, for each step; besides, every buffer of the plan exists and has
        // the length it gives, each feed's and tap's values hold that many per step for every
        // step of the run, and the `BetweenSteps` outlives the call.
        let done = code(
            self.ptrs.as_ptr(),
            consts_address(consts),
            dt,
            time,
            self.scratch.as_mut_ptr(),
            i64::from(learn),
            first,
            steps,
            self.plan.as_ptr(),
        );
        let exchanged = between.map_or(0, |b| b.exchanged);
        for _ in exchanged..done as usize {
            exchange(&self.swaps, data);
        }
        Ok(done as usize)
    }

    fn threads(&self) -> usize {
        self.helpers.as_ref().map_or(1, Helpers::threads)
    }

    fn absorbed_updates(&self) -> &[usize] {
        &self.absorbed
    }

    fn set_rates(&mut self, rates: &[f64]) {
        for (r, v) in self.rates.iter_mut().zip(rates) {
            *r = *v;
        }
    }

    fn checked_buffers(&self) -> &[usize] {
        &self.checked
    }

    fn all_finite(&self) -> bool {
        self.finite.iter().step_by(FLAG_STRIDE).all(|f| *f == 0.0)
    }

    fn run_on_threads(&mut self, job: &(dyn Fn(usize) + Sync)) {
        match &self.helpers {
            Some(h) => h.run_job(job),
            None => job(0),
        }
    }
}

/// Compiles `program` for `batch` rows, run by the calling thread.
pub fn compile(program: &Program, batch: usize) -> Result<CompiledStep, JitError> {
    compile_for_threads(program, batch, 1)
}

/// Compiles `program` for `batch` rows, each step run by `threads` threads together, sharing it
/// as [`TeamSplit::Auto`] chooses: every statement's rows (of the batch, or of a gradient)
/// split between them, meeting at a barrier where one's rows are read by another (see
/// `schedule`), or whole statements per thread — each layer's on one thread, a thread's
/// layers mostly consecutive — meeting once per step. Per element the operations and their
/// order are those of [`compile`], so results are identical; worth it when a step is long
/// (large batches or layers), since the threads meet at barriers between the statements and
/// the optimiser's work.
pub fn compile_for_threads(program: &Program, batch: usize, threads: usize) -> Result<CompiledStep, JitError> {
    compile_absorbing(program, batch, threads, &[])
}

/// [`compile_for_threads`], and the plain-SGD updates of those `candidates` (indices into the
/// program's learnables, e.g. `gle_runtime::sgd_learnables`) whose gradient is one `e·rᵀ`
/// statement that nothing else reads, and whose parameter nothing writes and no later
/// statement reads, are applied by that statement itself: `θ ← θ − lr·g` in the pass that
/// computes `g`, so the gradient is never written and the optimiser's pass over it disappears
/// (one pass over W instead of three for a plastic layer). The kernel lists them in
/// [`StepKernel::absorbed_updates`] and takes their rates from [`StepKernel::set_rates`]; each
/// parameter ends the step with the bits the optimiser would give it. At batch 1, a thread
/// computes each dense projection's `W·x`, `Wᵀ·e` and gradient (or absorbed update) in one pass
/// over W ([`CompiledStep::row_passes`]).
pub fn compile_absorbing(
    program: &Program,
    batch: usize,
    threads: usize,
    candidates: &[usize],
) -> Result<CompiledStep, JitError> {
    compile_team(program, batch, threads, candidates, TeamSplit::Auto)
}

/// [`compile_absorbing`] with the team's work shared as `split` says.
pub fn compile_team(
    program: &Program,
    batch: usize,
    threads: usize,
    candidates: &[usize],
    split: TeamSplit,
) -> Result<CompiledStep, JitError> {
    let threads = threads.max(1);
    let absorbed = absorbable(program, candidates);
    let (checked, checked_outs) = finite_checks(program);
    // Outer statement → (parameter, slot in the rates).
    let absorbing: HashMap<usize, (usize, usize)> = absorbed
        .iter()
        .enumerate()
        .map(|(slot, &(learnable, stmt))| (stmt, (program.learnables[learnable].param, slot)))
        .collect();
    let profile = std::env::var_os(PERF_MAP_VAR).is_some();
    let err = |e: &dyn std::fmt::Display| JitError(e.to_string());
    let mut flags = settings::builder();
    flags.set("use_colocated_libcalls", "false").map_err(|e| err(&e))?;
    flags.set("is_pic", "false").map_err(|e| err(&e))?;
    flags.set("opt_level", "speed").map_err(|e| err(&e))?;
    // Cranelift's verifier checks every function the tests compile (debug builds); release
    // builds skip it, a quarter of MNIST-1D 15k's compile time.
    if !cfg!(debug_assertions) {
        flags.set("enable_verifier", "false").map_err(|e| err(&e))?;
    }
    let isa = cranelift_native::builder()
        .map_err(|e| err(&e))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| err(&e))?;
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    for (name, ptr) in shims::SYMBOLS {
        jb.symbol(*name, *ptr);
    }
    for (name, ptr) in products::symbols() {
        jb.symbol(name, ptr);
    }
    let (name, ptr) = tanh_rows::symbol();
    jb.symbol(name, ptr);
    jb.symbol("gle_barrier", gle_barrier as *const u8);
    jb.symbol("gle_between_steps", gle_between_steps as *const u8);
    let mut module = JITModule::new(jb);
    let ptr_ty = module.target_config().pointer_type();
    let mut ctx = module.make_context();
    for ty in [ptr_ty, ptr_ty, types::F64, types::F64, ptr_ty, types::I64] {
        ctx.func.signature.params.push(AbiParam::new(ty));
    }
    if threads > 1 {
        for ty in [types::I64, ptr_ty] {
            ctx.func.signature.params.push(AbiParam::new(ty));
        }
    } else {
        for ty in [types::I64, types::I64, ptr_ty] {
            ctx.func.signature.params.push(AbiParam::new(ty));
        }
        ctx.func.signature.returns.push(AbiParam::new(types::I64));
    }
    let func_id = module
        .declare_function("glec_step_program", Linkage::Export, &ctx.func.signature)
        .map_err(|e| err(&e))?;
    let mut shim_ids = declare_shims(&mut module).map_err(|e| err(&e))?;
    let mut barrier_sig = module.make_signature();
    barrier_sig.params.push(AbiParam::new(ptr_ty));
    let barrier_id = module
        .declare_function("gle_barrier", Linkage::Import, &barrier_sig)
        .map_err(|e| err(&e))?;
    barrier_sig.returns.push(AbiParam::new(types::I64));
    let between_id = module
        .declare_function("gle_between_steps", Linkage::Import, &barrier_sig)
        .map_err(|e| err(&e))?;
    // (Declared last, so that the others keep their numbers in the Cranelift IR text.)
    let mut row_sig = module.make_signature();
    row_sig
        .params
        .extend([AbiParam::new(ptr_ty), AbiParam::new(ptr_ty), AbiParam::new(types::I64)]);
    let tanh_row_id = module
        .declare_function(tanh_rows::NAME, Linkage::Import, &row_sig)
        .map_err(|e| err(&e))?;
    shim_ids.push((tanh_rows::NAME, tanh_row_id));
    let lens: Vec<usize> = program
        .buffers
        .iter()
        .map(|b| match b.layout {
            Layout::Batch => b.len * batch,
            Layout::Shared => b.len,
        })
        .collect();
    // The same, as `e·rᵀ` statement → parameter.
    let absorbed_params: HashMap<usize, usize> = absorbing.iter().map(|(&stmt, &(param, _))| (stmt, param)).collect();
    // Where whole statements are chosen (`TeamSplit`), each layer's run on one thread
    // (`schedule::statement_owners`), and row passes are a thread's own.
    let owners = schedule::statement_owners(program, &absorbed_params, threads, batch, split);
    let pass_threads = if owners.is_some() { 1 } else { threads };
    let passes: Vec<RowPass> = find_row_passes(program, &absorbing, &absorbed_params, batch, pass_threads)
        .into_iter()
        .filter(|p| {
            owners
                .as_ref()
                .is_none_or(|o| p.members().all(|m| o[m] == o[p.mat_vec]))
        })
        .collect();
    let passes_count = passes.len();
    let passes_with_wt_e = passes.iter().filter(|p| p.mat_t_vec.is_some()).count();
    let mut fctx = FunctionBuilderContext::new();
    let scratch_len;
    let pool;
    let meetings;
    {
        let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        fb.seal_block(entry);
        let params = fb.block_params(entry).to_vec();
        let mut e = Emitter {
            fb,
            program,
            batch,
            module: &mut module,
            shim_ids: shim_ids.into_iter().collect(),
            shims: HashMap::new(),
            bufs: params[0],
            consts: params[1],
            dt: params[2],
            time: params[3],
            scratch: params[4],
            learn: params[5],
            scratch_len: 0,
            bases: HashMap::new(),
            team: None,
            pool: VectorPool::new(),
            meetings: 0,
            absorbing: None,
            checked_outs,
        };
        if threads > 1 {
            let meet = e.module.declare_func_in_func(barrier_id, e.fb.func);
            e.team = Some(Team {
                threads,
                thread: params[6],
                barrier: params[7],
                meet,
                whole: owners.is_some(),
            });
        }
        // One thread loops over the steps it is asked for; a team's threads take one step.
        let steps = (threads == 1).then(|| e.begin_steps(params[6], params[7], params[8], between_id));
        e.clear_finite_flag();
        // One thread runs the items in program order; a team in the order of
        // `schedule::team_schedule`, meeting only where it says.
        let items: Vec<(Item, bool)> = if threads > 1 && owners.is_none() {
            schedule::team_schedule(program, &absorbed_params)
        } else {
            (0..program.stmts.len())
                .map(Item::Stmt)
                .chain((0..program.commits.len()).map(Item::Commit))
                .map(|item| (item, false))
                .collect()
        };
        for (item, meet) in items {
            if meet {
                e.meet();
            }
            match item {
                Item::Stmt(k) => {
                    let owner = |m: usize| owners.as_ref().map(|o| o[m]);
                    for pass in passes.iter().filter(|p| p.at == k) {
                        e.on_thread(owner(pass.mat_vec), &mut |e| {
                            if profile {
                                e.fb.set_srcloc(SourceLoc::new(pass.mat_vec as u32));
                            }
                            e.row_pass(pass)?;
                            if let Some(bias) = pass.bias {
                                if profile {
                                    e.fb.set_srcloc(SourceLoc::new(bias as u32));
                                }
                                e.stmt(&program.stmts[bias])?;
                            }
                            Ok(())
                        })?;
                    }
                    if passes.iter().any(|p| p.members().any(|m| m == k)) {
                        continue;
                    }
                    let stmt = &program.stmts[k];
                    let absorbed = absorbing.get(&k).copied();
                    e.on_thread(owner(k), &mut |e| {
                        if profile {
                            e.fb.set_srcloc(SourceLoc::new(k as u32));
                        }
                        e.absorbing = absorbed;
                        if stmt.computes_gradient() {
                            e.when_learning(&mut |e| e.stmt(stmt))?;
                        } else {
                            e.stmt(stmt)?;
                        }
                        e.absorbing = None;
                        Ok(())
                    })?;
                }
                Item::Commit(k) => {
                    if profile {
                        e.fb.set_srcloc(SourceLoc::new(program.stmts.len() as u32));
                    }
                    let (dst, src) = program.commits[k];
                    e.copy(dst, src, lens[dst]);
                }
            }
        }
        // A team's threads meet at the end of the step after their code returns
        // (`TeamState::end_step`), each with its finiteness flag.
        if e.team.is_some() {
            e.meetings += 1;
        }
        match steps {
            Some(steps) => e.end_steps(steps),
            None => {
                e.fb.ins().return_(&[]);
            }
        }
        scratch_len = e.scratch_len;
        pool = e.pool;
        meetings = e.meetings;
        let config = e.module.target_config();
        e.fb.finalize(config);
    }
    let function = ctx.func.clone();
    module
        .define_function(func_id, &mut ctx)
        .map_err(|e| err(&format!("{e:?}")))?;
    let regions: Vec<(u32, u32, u32)> = match ctx.compiled_code() {
        Some(code) if profile => code
            .buffer
            .get_srclocs_sorted()
            .iter()
            .filter(|r| !r.loc.is_default())
            .map(|r| (r.start, r.end, r.loc.bits()))
            .collect(),
        _ => Vec::new(),
    };
    module.clear_context(&mut ctx);
    module.finalize_definitions().map_err(|e| err(&e))?;
    let raw = module.get_finalized_function(func_id);
    if profile {
        write_perf_map(program, raw, &regions).map_err(|e| err(&e))?;
    }
    // SAFETY: `raw` is the entry of the function just defined with the `StepFn` signature
    // (two pointers, two f64, a pointer, two i64 and a pointer, returning an i64) or, for a
    // team, the `ThreadedStepFn` one (two pointers, two f64, a pointer, two i64 and a pointer,
    // no return), and the platform's default calling convention.
    #[allow(unsafe_code)]
    let code = if threads == 1 {
        Code::Single(unsafe { std::mem::transmute::<*const u8, StepFn>(raw) })
    } else {
        Code::Threaded(unsafe { std::mem::transmute::<*const u8, ThreadedStepFn>(raw) })
    };
    let n = lens.len();
    let absorbed_learnables: Vec<usize> = absorbed.iter().map(|a| a.0).collect();
    let pieces = Pieces::new(program, &lens, &absorbed_learnables, owners.as_deref(), threads);
    // One scratch space per thread, sized by the program's shapes: allocated here, where a
    // failure is an error rather than an abort.
    let mut scratches = (0..threads)
        .map(|_| zeroed(scratch_len.max(1)))
        .collect::<Result<Vec<_>, _>>()?;
    let scratch = scratches.remove(0);
    let helpers = match code {
        Code::Threaded(code) => Some(Helpers::start(code, threads, scratches)),
        Code::Single(_) => None,
    };
    Ok(CompiledStep {
        _module: module,
        code,
        lens,
        function,
        ptrs: Vec::with_capacity(n + 3),
        scratch,
        helpers,
        pool,
        meetings,
        owners,
        row_passes: passes_count,
        row_passes_with_wt_e: passes_with_wt_e,
        absorbed: absorbed_learnables,
        rates: vec![f64::NAN; absorbed.len().max(1)].into_boxed_slice(),
        swaps: program.swaps.clone(),
        plan: Plan::new(),
        checked,
        finite: vec![0.0; (threads - 1) * FLAG_STRIDE + 1].into_boxed_slice(),
        pieces,
        update_storage: Storage::default(),
        learnable_buffers: program.learnables.iter().flat_map(|l| [l.param, l.grad]).collect(),
    })
}

/// The watched buffers ([`Program::watched`]) whose values the code checks as it computes
/// them, and the `Map` outputs it checks for that: a watched buffer's values are computed into
/// the buffer itself or into the staged buffer committed to it, and are checked when only
/// `Map` statements write that buffer (the simulation scans the rest).
fn finite_checks(program: &Program) -> (Vec<usize>, HashSet<usize>) {
    let mut checked = Vec::new();
    let mut outs = HashSet::new();
    for w in program.watched() {
        let source = program
            .commits
            .iter()
            .chain(&program.swaps)
            .find(|c| c.0 == w)
            .map_or(w, |c| c.1);
        let writers: Vec<&Stmt> = program
            .stmts
            .iter()
            .filter(|s| program.reads_and_writes(s).1.contains(&source))
            .collect();
        if !writers.is_empty() && writers.iter().all(|s| matches!(s, Stmt::Map { .. })) {
            checked.push(w);
            outs.insert(source);
        }
    }
    (checked, outs)
}

/// The `candidates` whose update [`compile_absorbing`] can apply in the step, as (learnable,
/// index of the `e·rᵀ` statement computing its gradient), in the order of `candidates`.
fn absorbable(program: &Program, candidates: &[usize]) -> Vec<(usize, usize)> {
    let access: Vec<(Vec<usize>, Vec<usize>)> = program.stmts.iter().map(|s| program.reads_and_writes(s)).collect();
    let committed = |b: usize| {
        program
            .commits
            .iter()
            .chain(&program.swaps)
            .any(|&(d, s)| d == b || s == b)
    };
    let mut out = Vec::new();
    for &k in candidates {
        let Some(l) = program.learnables.get(k) else {
            continue;
        };
        let (param, grad) = (l.param, l.grad);
        let writers: Vec<usize> = (0..access.len()).filter(|&i| access[i].1.contains(&grad)).collect();
        let [outer] = writers[..] else {
            continue;
        };
        let is_outer = matches!(program.stmts[outer], Stmt::Outer { grad: g, .. } if g == grad);
        let grad_read = access.iter().any(|a| a.0.contains(&grad));
        let param_written = access.iter().any(|a| a.1.contains(&param));
        let param_read_later = access[outer..].iter().any(|a| a.0.contains(&param));
        if is_outer && !grad_read && !param_written && !param_read_later && !committed(param) && !committed(grad) {
            out.push((k, outer));
        }
    }
    out
}

/// Statements over the same W that one thread runs as one pass over W at batch 1
/// ([`find_row_passes`]), placed before statement `at`: a `W·x`, with the `Wᵀ·e` of the same W
/// or the `e·xᵀ` of its gradient (or the absorbed update that replaces it) or both; the map
/// that adds the bias to `W·x` follows the pass.
struct RowPass {
    mat_vec: usize,
    /// The `Map` right after the `W·x` that adds the bias to its output in place.
    bias: Option<usize>,
    /// The `Wᵀ·e` statement.
    mat_t_vec: Option<usize>,
    /// The gradient's `e·xᵀ` statement, with its slot in the rates when it is absorbed.
    outer: Option<(usize, Option<usize>)>,
    at: usize,
}

impl RowPass {
    /// The statements the pass computes.
    fn members(&self) -> impl Iterator<Item = usize> {
        std::iter::once(self.mat_vec)
            .chain(self.bias)
            .chain(self.mat_t_vec)
            .chain(self.outer.map(|o| o.0))
    }
}

/// The `W·x` statements whose pass over W can also compute the `Wᵀ·e` of that W and the
/// gradient `e·xᵀ` of W (with the same `e`), or apply the absorbed update that replaces it
/// (`absorbing`: `e·xᵀ` statement → (parameter, slot); `absorbed_params` the same without the
/// slots), for one thread at batch 1 (a larger batch would stream every batch row once per row
/// of W). The gradient reads the same `x` as the product; every statement of a pass moves to a
/// common place `at` past statements it shares no buffer with, one of them writes (which puts
/// the pass after the statements that compute `e`): each computes what it computed where the
/// step program has it. An absorbed update, which rewrites W, comes last in the step program
/// (or it would not be absorbed), and the pass reads each element of W before it writes it. The
/// spans of two passes never overlap, so each moves only past statements that stay where they
/// are.
fn find_row_passes(
    program: &Program,
    absorbing: &HashMap<usize, (usize, usize)>,
    absorbed_params: &HashMap<usize, usize>,
    batch: usize,
    threads: usize,
) -> Vec<RowPass> {
    if batch != 1 || threads != 1 {
        return Vec::new();
    }
    // Each statement's accesses as the team schedule sees them (an absorbed update reads e, x
    // and W and writes W).
    let access: Vec<schedule::Access> = (0..program.stmts.len())
        .map(|k| schedule::Access::of(program, Item::Stmt(k), absorbed_params))
        .collect();
    let conflict = |a: &schedule::Access, b: &schedule::Access| a.conflicts(b, |_| false);
    let mut passes: Vec<RowPass> = Vec::new();
    for (mat_vec, stmt) in program.stmts.iter().enumerate() {
        let &Stmt::MatVec {
            out, w, rows, cols, x, ..
        } = stmt
        else {
            continue;
        };
        // `W·x + b` is a `Map` that rewrites the product's output, reading besides it only
        // parameters (shared buffers): it moves with the product.
        let bias = match program.stmts.get(mat_vec + 1) {
            Some(next @ Stmt::Map { outs, .. }) if outs.len() == 1 && outs[0].0 == out => {
                let (reads, _) = program.reads_and_writes(next);
                let shared = |b: usize| b == out || program.buffers[b].layout == Layout::Shared;
                reads.into_iter().all(shared).then_some(mat_vec + 1)
            }
            _ => None,
        };
        let gradients: Vec<usize> = program
            .learnables
            .iter()
            .filter(|l| l.param == w)
            .map(|l| l.grad)
            .collect();
        // The gradient's statement, its slot when absorbed, and the error it reads.
        let gradient = (mat_vec + 1..program.stmts.len()).find_map(|k| match program.stmts[k] {
            Stmt::Outer {
                grad,
                rows: r,
                cols: c,
                a,
                x: v,
                ..
            } if gradients.contains(&grad) && (r, c, v) == (rows, cols, x) => {
                Some((k, absorbing.get(&k).map(|&(_, slot)| slot), a))
            }
            _ => None,
        });
        let outer = gradient.map(|(k, slot, _)| (k, slot));
        let error = gradient.map(|g| g.2);
        let mat_t_vec = (0..program.stmts.len()).find(|&k| {
            matches!(program.stmts[k], Stmt::MatTVec { w: m, rows: r, cols: c, x: e, .. }
                if m == w && (r, c) == (rows, cols) && error.is_none_or(|a| a == e)
                    && outer.is_none_or(|(o, _)| k < o))
        });
        if outer.is_none() && mat_t_vec.is_none() {
            continue;
        }
        let mut pass = RowPass {
            mat_vec,
            bias,
            mat_t_vec,
            outer,
            at: 0,
        };
        let members: Vec<usize> = pass.members().collect();
        let first = members.iter().copied().min().unwrap_or(mat_vec);
        let last = members.iter().copied().max().unwrap_or(mat_vec);
        // Passes come in step order: one whose span overlaps the last one's is left out.
        if passes.last().is_some_and(|p| p.members().any(|m| m >= first)) {
            continue;
        }
        let movable = |m: usize, at: usize| {
            let past = if m < at { m + 1..at } else { at..m };
            past.filter(|s| !members.contains(s))
                .all(|s| !conflict(&access[s], &access[m]))
        };
        if let Some(at) = (first + 1..=last).find(|&at| members.iter().all(|&m| movable(m, at))) {
            pass.at = at;
            passes.push(pass);
        }
    }
    passes
}

/// The entries of the finiteness flags per thread: a page each, so that the threads' updates
/// of their flags (one per batch row of a checked map) neither take a line from each other nor
/// have the processor prefetch the other's (see [`gle_runtime::BUFFER_GUARD`]).
const FLAG_STRIDE: usize = 512;

/// Setting this environment variable makes [`compile_for_threads`] describe the compiled code
/// to `perf` (`/tmp/perf-PID.map`): one symbol per statement of the step program and one for
/// the commits, so that `perf report` splits the step's time between them.
pub const PERF_MAP_VAR: &str = "GLEC_PERF_MAP";

/// Appends the code regions of the statements to `/tmp/perf-PID.map` (`perf`'s format for
/// code generated at run time), named `glec:K:WHAT` after statement K.
fn write_perf_map(program: &Program, code: *const u8, regions: &[(u32, u32, u32)]) -> std::io::Result<()> {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("perf-{}.map", std::process::id()));
    let mut out = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let base = code as usize;
    for &(start, end, loc) in regions {
        let name = match program.stmts.get(loc as usize) {
            Some(stmt) => stmt_label(program, stmt),
            None => "commits".to_string(),
        };
        let size = end - start;
        writeln!(out, "{:x} {size:x} glec:{loc}:{name}", base + start as usize)?;
    }
    Ok(())
}

/// A statement's kind and the buffer it writes first, e.g. `map:h1.e` or `outer:h1_h2.W.grad`.
fn stmt_label(program: &Program, stmt: &Stmt) -> String {
    let (kind, buf) = match stmt {
        Stmt::Map { outs, .. } => ("map", outs.first().map_or(0, |o| o.0)),
        &Stmt::MatVec { out, .. } => ("matvec", out),
        &Stmt::MatTVec { out, .. } => ("mattvec", out),
        &Stmt::Outer { grad, .. } => ("outer", grad),
        &Stmt::Mean { grad, .. } => ("mean", grad),
        &Stmt::Softmax { out, .. } => ("softmax", out),
    };
    format!("{kind}:{}", program.buffers[buf].name.replace(' ', "_"))
}

/// Every buffer a statement reads or writes (those it writes first).
fn stmt_buffers(program: &Program, stmt: &Stmt) -> Vec<usize> {
    let (reads, mut bufs) = program.reads_and_writes(stmt);
    bufs.extend(reads);
    bufs
}

fn declare_shims(module: &mut JITModule) -> Result<Vec<(&'static str, FuncId)>, cranelift_module::ModuleError> {
    let mut out = Vec::new();
    for (name, arity) in shims::ARITIES {
        let mut sig: Signature = module.make_signature();
        for _ in 0..*arity {
            sig.params.push(AbiParam::new(types::F64));
        }
        sig.returns.push(AbiParam::new(types::F64));
        out.push((*name, module.declare_function(name, Linkage::Import, &sig)?));
    }
    for (name, ints, floats) in products::SIGNATURES {
        let mut sig: Signature = module.make_signature();
        for _ in 0..*ints {
            sig.params.push(AbiParam::new(types::I64));
        }
        for _ in 0..*floats {
            sig.params.push(AbiParam::new(types::F64));
        }
        out.push((*name, module.declare_function(name, Linkage::Import, &sig)?));
    }
    Ok(out)
}

/// The `extern "C"` math shims the generated code calls: each is the reference function of
/// `gle_derive::sym::apply`, so JIT and interpreter agree bit for bit.
pub mod shims {
    use super::{Builtin, Fun, apply};

    macro_rules! shims {
        ($($name:ident($($arg:ident),+) = $fun:expr;)*) => {
            $(
                #[doc = concat!("The `", stringify!($name), "` shim.")]
                pub extern "C" fn $name($($arg: f64),+) -> f64 {
                    apply($fun, &[$($arg),+])
                }
            )*
            /// Shim names with their addresses, for the JIT's symbol table.
            pub const SYMBOLS: &[(&str, *const u8)] = &[$((stringify!($name), $name as *const u8),)*
                ("gle_pow", gle_pow as *const u8), ("gle_fmax", gle_fmax as *const u8)];
            /// Shim names with their arities.
            pub const ARITIES: &[(&str, usize)] = &[$((stringify!($name), [$(stringify!($arg)),+].len()),)* ("gle_pow", 2), ("gle_fmax", 2)];
            /// The shim of elementwise function `f` called with `n` arguments.
            pub fn name(f: Fun, n: usize) -> Option<&'static str> {
                $(if f == $fun && n == [$(stringify!($arg)),+].len() { return Some(stringify!($name)); })*
                None
            }
        };
    }

    shims! {
        gle_tanh(x) = Fun::B(Builtin::Tanh);
        gle_sigmoid(x) = Fun::B(Builtin::Sigmoid);
        gle_hard_sigmoid(x) = Fun::B(Builtin::HardSigmoid);
        gle_relu(x) = Fun::B(Builtin::Relu);
        gle_softplus(x) = Fun::B(Builtin::Softplus);
        gle_hard_tanh(x) = Fun::B(Builtin::HardTanh);
        gle_exp(x) = Fun::B(Builtin::Exp);
        gle_log(x) = Fun::B(Builtin::Log);
        gle_log1p(x) = Fun::B(Builtin::Log1p);
        gle_sqrt(x) = Fun::B(Builtin::Sqrt);
        gle_abs(x) = Fun::B(Builtin::Abs);
        gle_sin(x) = Fun::B(Builtin::Sin);
        gle_cos(x) = Fun::B(Builtin::Cos);
        gle_min(a, b) = Fun::B(Builtin::Min);
        gle_max(a, b) = Fun::B(Builtin::Max);
        gle_clamp(x, lo, hi) = Fun::B(Builtin::Clamp);
        gle_step(x) = Fun::B(Builtin::Step);
        gle_sawtooth(x) = Fun::B(Builtin::Sawtooth);
        gle_square(x) = Fun::B(Builtin::Square);
        gle_positive(x) = Fun::Positive;
        gle_sign(x) = Fun::Sign;
    }

    /// `x^y`, as the interpreter computes it.
    pub extern "C" fn gle_pow(x: f64, y: f64) -> f64 {
        x.powf(y)
    }

    /// The larger of two values, as the interpreter's softmax folds them.
    pub extern "C" fn gle_fmax(a: f64, b: f64) -> f64 {
        a.max(b)
    }
}

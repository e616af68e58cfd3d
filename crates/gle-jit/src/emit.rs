//! The code generator: [`Emitter`] lowers the statements of a step program to Cranelift IR —
//! elementwise maps two lanes at a time (`tanh` and the piecewise functions inlined), calls of
//! the dense [`crate::products`] and the math shims, the loop over a run's steps, a
//! team's row shares and barriers, and the finiteness checks of the values it stores.

use super::*;

/// Room for this many distinct constants in a [`VectorPool`].
const POOL_CAPACITY: usize = 256;

/// A constant's two lanes, aligned so that loads of it can be operands of vector instructions.
#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
pub(super) struct Lanes([f64; 2]);

/// The F64X2 constants of the compiled code, each loaded where it is used. Splatted constants
/// would be hoisted out of the loops, and with the ~25 of an inlined `tanh` more values are live
/// than there are registers: they were spilled to the stack and reloaded, some stored again,
/// in every iteration. A load from here is folded into the instruction that uses it instead.
pub(super) struct VectorPool {
    /// Fixed at [`POOL_CAPACITY`] entries, so the address the code embeds never changes.
    pub(super) lanes: Box<[Lanes]>,
    pub(super) index: HashMap<u64, usize>,
}

impl VectorPool {
    pub(super) fn new() -> Self {
        Self {
            lanes: vec![Lanes::default(); POOL_CAPACITY].into_boxed_slice(),
            index: HashMap::new(),
        }
    }

    /// The byte offset of `v` in the pool, added if new; `None` when the pool is full.
    fn offset(&mut self, v: f64) -> Option<usize> {
        let next = self.index.len();
        let k = *self.index.entry(v.to_bits()).or_insert(next);
        if k >= POOL_CAPACITY {
            self.index.remove(&v.to_bits());
            return None;
        }
        self.lanes[k] = Lanes([v, v]);
        Some(k * size_of::<Lanes>())
    }
}

/// Generates the code of the statements.
pub(super) struct Emitter<'a, 'f> {
    pub(super) fb: FunctionBuilder<'f>,
    pub(super) program: &'a Program,
    pub(super) batch: usize,
    pub(super) module: &'a mut JITModule,
    /// Every shim the module knows, declared in the function when first called.
    pub(super) shim_ids: HashMap<&'static str, FuncId>,
    pub(super) shims: HashMap<&'static str, FuncRef>,
    pub(super) bufs: Value,
    pub(super) consts: Value,
    pub(super) dt: Value,
    pub(super) time: Value,
    /// Base pointers of buffers, loaded at the start of each statement.
    pub(super) bases: HashMap<usize, Value>,
    /// The scratch area for materialised function results.
    pub(super) scratch: Value,
    /// Whether this step computes gradients (an i64, 0 or 1).
    pub(super) learn: Value,
    /// Values of scratch the code needs.
    pub(super) scratch_len: usize,
    /// Set when the code is run by several threads together.
    pub(super) team: Option<Team>,
    pub(super) pool: VectorPool,
    /// Barriers emitted so far (outside the statements' branches: met once per step each).
    pub(super) meetings: usize,
    /// For the statement being emitted, an absorbed update's parameter buffer and its slot in
    /// the rates (see [`compile_absorbing`]).
    pub(super) absorbing: Option<(usize, usize)>,
    /// `Map` outputs whose values the code checks for NaN and Inf (see [`finite_checks`]).
    pub(super) checked_outs: HashSet<usize>,
}

/// The loop over the steps of a run (see [`Emitter::begin_steps`]).
pub(super) struct Steps {
    /// The block that starts a step.
    header: cranelift_codegen::ir::Block,
    /// The block that returns the steps taken (its parameter).
    exit: cranelift_codegen::ir::Block,
    /// The index of the step in the run.
    k: Value,
    /// Steps to take (a function parameter).
    steps: Value,
    /// The run's [`Plan`] (a function parameter).
    plan: Value,
}

/// One `(buffer, values, address)` entry of a [`Plan`], loaded.
struct PlanEntry {
    buf: Value,
    len: Value,
    address: Value,
}

/// The threads that run one compiled step together.
pub(super) struct Team {
    pub(super) threads: usize,
    /// This thread's index, a function parameter.
    pub(super) thread: Value,
    /// The barrier's address, a function parameter.
    pub(super) barrier: Value,
    /// The barrier shim.
    pub(super) meet: FuncRef,
    /// Each thread runs whole statements, those [`schedule::statement_owners`] gives it,
    /// instead of its share of every statement.
    pub(super) whole: bool,
}

impl Emitter<'_, '_> {
    /// The function reference of shim `name`, declared in this function on first use.
    fn shim(&mut self, name: &'static str) -> FuncRef {
        if let Some(f) = self.shims.get(name) {
            return *f;
        }
        let f = self.module.declare_func_in_func(self.shim_ids[name], self.fb.func);
        self.shims.insert(name, f);
        f
    }

    /// The base pointer of a buffer, loaded at the start of the current statement (base pointers
    /// are not kept across statements, which keeps them in registers inside the loops).
    fn base(&mut self, buf: usize) -> Value {
        if let Some(v) = self.bases.get(&buf) {
            return *v;
        }
        let v = self
            .fb
            .ins()
            .load(types::I64, MemFlagsData::trusted(), self.bufs, (buf * 8) as i32);
        self.bases.insert(buf, v);
        v
    }

    /// `ptr + index·8 · stride`: the address of row `index` of `stride` values.
    fn offset(&mut self, ptr: Value, index: Value, stride: usize) -> Value {
        let bytes = self.fb.ins().imul_imm_s(index, (stride * 8) as i64);
        self.fb.ins().iadd(ptr, bytes)
    }

    /// Loads element `index` of the f64 array at `ptr`.
    fn load_at(&mut self, ptr: Value, index: Value) -> Value {
        self.load_typed(ptr, index, types::F64)
    }

    /// Loads element `index` (F64) or elements `index, index + 1` (F64X2) of the f64 array at
    /// `ptr`.
    fn load_typed(&mut self, ptr: Value, index: Value, ty: types::Type) -> Value {
        let a = self.offset(ptr, index, 1);
        self.fb.ins().load(ty, Self::element_flags(ty), a, 0)
    }

    /// Stores `v` (F64, or F64X2 for two elements) at element `index` of the f64 array at `ptr`.
    fn store_at(&mut self, ptr: Value, index: Value, v: Value) {
        let ty = self.fb.func.dfg.value_type(v);
        let a = self.offset(ptr, index, 1);
        self.fb.ins().store(Self::element_flags(ty), v, a, 0);
    }

    /// Memory flags of an access: scalars are aligned; vectors start at any multiple of 8 bytes.
    fn element_flags(ty: types::Type) -> MemFlagsData {
        if ty == types::F64 {
            MemFlagsData::trusted()
        } else {
            MemFlagsData::new().with_notrap()
        }
    }

    /// `for i in 0..n { body(i) }` as a rotated loop (`n ≥ 1` is known when compiling): one
    /// conditional branch per iteration.
    fn repeat(
        &mut self,
        n: usize,
        body: &mut dyn FnMut(&mut Self, Value) -> Result<(), JitError>,
    ) -> Result<(), JitError> {
        if n == 0 {
            return Ok(());
        }
        let inner = self.fb.create_block();
        let exit = self.fb.create_block();
        self.fb.append_block_param(inner, types::I64);
        let zero = self.fb.ins().iconst(types::I64, 0);
        self.fb.ins().jump(inner, &[BlockArg::from(zero)]);
        self.fb.switch_to_block(inner);
        let i = self.fb.block_params(inner)[0];
        body(self, i)?;
        let next = self.fb.ins().iadd_imm_s(i, 1);
        let more = self.fb.ins().icmp_imm_s(IntCC::SignedLessThan, next, n as i64);
        self.fb.ins().brif(more, inner, &[BlockArg::from(next)], exit, &[]);
        self.fb.seal_block(inner);
        self.fb.switch_to_block(exit);
        self.fb.seal_block(exit);
        Ok(())
    }

    /// The address of this thread's finiteness flag: entry `thread·FLAG_STRIDE` of the array
    /// whose address follows the rates' in the buffer pointers.
    fn finite_flag(&mut self) -> Value {
        let slot = ((self.program.buffers.len() + 2) * 8) as i32;
        let flags = self.fb.ins().load(types::I64, MemFlagsData::trusted(), self.bufs, slot);
        match &self.team {
            Some(team) => {
                let at = self.fb.ins().imul_imm_s(team.thread, (8 * FLAG_STRIDE) as i64);
                self.fb.ins().iadd(flags, at)
            }
            None => flags,
        }
    }

    /// Opens the loop over the steps of a run (one thread): step `k` runs at time `time` (the
    /// first) or `(first_step + k)·dt`, after the [plan](Plan)'s feeds are copied in.
    pub(super) fn begin_steps(&mut self, first_step: Value, steps: Value, plan: Value, between: FuncId) -> Steps {
        let (header, exit) = (self.fb.create_block(), self.fb.create_block());
        self.fb.append_block_param(header, types::I64);
        self.fb.append_block_param(exit, types::I64);
        let zero = self.int(0);
        self.fb.ins().jump(header, &[BlockArg::from(zero)]);
        self.fb.switch_to_block(header);
        let k = self.fb.block_params(header)[0];
        // The work between the last step and this one, if any.
        let context = self.fb.ins().load(types::I64, MemFlagsData::trusted(), plan, 24);
        let later = self.fb.ins().icmp_imm_u(IntCC::NotEqual, k, 0);
        let given = self.fb.ins().icmp_imm_u(IntCC::NotEqual, context, 0);
        let call = self.fb.ins().band(later, given);
        let (calling, called) = (self.fb.create_block(), self.fb.create_block());
        self.fb.ins().brif(call, calling, &[], called, &[]);
        self.fb.switch_to_block(calling);
        self.fb.seal_block(calling);
        let between = self.module.declare_func_in_func(between, self.fb.func);
        let call = self.fb.ins().call(between, &[context]);
        let go_on = self.fb.inst_results(call)[0];
        self.fb.ins().brif(go_on, called, &[], exit, &[BlockArg::from(k)]);
        self.fb.switch_to_block(called);
        self.fb.seal_block(called);
        let is_first = self.fb.ins().icmp_imm_s(IntCC::Equal, k, 0);
        let index = self.fb.ins().iadd(first_step, k);
        let index = self.fb.ins().fcvt_from_sint(types::F64, index);
        let later = self.fb.ins().fmul(index, self.dt);
        self.time = self.fb.ins().select(is_first, self.time, later);
        let feeds = self.fb.ins().load(types::I64, MemFlagsData::trusted(), plan, 0);
        let _ = self.plan_entries(plan, zero, feeds, &mut |e, feed| {
            let dst = e.buffer_address(feed.buf);
            let src = e.step_row(feed.address, k, feed.len);
            e.copy_values(dst, src, feed.len)
        });
        Steps {
            header,
            exit,
            k,
            steps,
            plan,
        }
    }

    /// Closes the loop of [`Self::begin_steps`] after a step: exchanges the pointers of the
    /// program's swaps, copies the taps out, scans, and goes on with the next step unless
    /// this was the last or left a value it checks non-finite; returns the steps taken.
    pub(super) fn end_steps(&mut self, l: Steps) {
        self.bases.clear();
        for &(a, b) in &self.program.swaps {
            let flags = MemFlagsData::trusted();
            let pa = self.fb.ins().load(types::I64, flags, self.bufs, (a * 8) as i32);
            let pb = self.fb.ins().load(types::I64, flags, self.bufs, (b * 8) as i32);
            self.fb.ins().store(flags, pb, self.bufs, (a * 8) as i32);
            self.fb.ins().store(flags, pa, self.bufs, (b * 8) as i32);
        }
        let count = |e: &mut Self, i: i32| e.fb.ins().load(types::I64, MemFlagsData::trusted(), l.plan, 8 * i);
        let (feeds, taps, scans) = (count(self, 0), count(self, 1), count(self, 2));
        let _ = self.plan_entries(l.plan, feeds, taps, &mut |e, tap| {
            let src = e.buffer_address(tap.buf);
            let dst = e.step_row(tap.address, l.k, tap.len);
            e.copy_values(dst, src, tap.len)
        });
        let scanned = self.fb.ins().iadd(feeds, taps);
        let _ = self.plan_entries(l.plan, scanned, scans, &mut |e, scan| {
            let values = e.buffer_address(scan.buf);
            e.scan(values, scan.len);
            Ok(())
        });
        let flag = self.finite_flag();
        let flag = self.fb.ins().load(types::F64, MemFlagsData::trusted(), flag, 0);
        let zero = self.fb.ins().f64const(0.0);
        let blown_up = self.fb.ins().fcmp(FloatCC::NotEqual, flag, zero);
        let next = self.fb.ins().iadd_imm_s(l.k, 1);
        let (more, exit) = (self.fb.create_block(), l.exit);
        let done = [BlockArg::from(next)];
        self.fb.ins().brif(blown_up, exit, &done, more, &[]);
        self.fb.switch_to_block(more);
        self.fb.seal_block(more);
        let go_on = self.fb.ins().icmp(IntCC::SignedLessThan, next, l.steps);
        self.fb.ins().brif(go_on, l.header, &done, exit, &done);
        self.fb.seal_block(l.header);
        self.fb.switch_to_block(exit);
        self.fb.seal_block(exit);
        let taken = self.fb.block_params(exit)[0];
        self.fb.ins().return_(&[taken]);
    }

    /// Runs `body` for the plan's entries `first..first + count`.
    fn plan_entries(
        &mut self,
        plan: Value,
        first: Value,
        count: Value,
        body: &mut dyn FnMut(&mut Self, PlanEntry) -> Result<(), JitError>,
    ) -> Result<(), JitError> {
        let end = self.fb.ins().iadd(first, count);
        self.repeat_range(first, end, &mut |e, j| {
            let entry = e.fb.ins().imul_imm_s(j, 24);
            let entry = e.fb.ins().iadd(plan, entry);
            let flags = MemFlagsData::trusted();
            let buf = e.fb.ins().load(types::I64, flags, entry, 32);
            let len = e.fb.ins().load(types::I64, flags, entry, 40);
            let address = e.fb.ins().load(types::I64, flags, entry, 48);
            body(e, PlanEntry { buf, len, address })
        })
    }

    /// The address of buffer `buf` (an index known only when the code runs).
    fn buffer_address(&mut self, buf: Value) -> Value {
        let slot = self.fb.ins().imul_imm_s(buf, 8);
        let slot = self.fb.ins().iadd(self.bufs, slot);
        self.fb.ins().load(types::I64, MemFlagsData::trusted(), slot, 0)
    }

    /// The address of row `k` of rows of `len` values at `values`.
    fn step_row(&mut self, values: Value, k: Value, len: Value) -> Value {
        let row = self.fb.ins().imul(k, len);
        let bytes = self.fb.ins().imul_imm_s(row, 8);
        self.fb.ins().iadd(values, bytes)
    }

    /// Copies `len` values from `src` to `dst`.
    fn copy_values(&mut self, dst: Value, src: Value, len: Value) -> Result<(), JitError> {
        let zero = self.int(0);
        self.repeat_range(zero, len, &mut |e, i| {
            let v = e.load_at(src, i);
            e.store_at(dst, i, v);
            Ok(())
        })
    }

    /// Marks this thread's finiteness flag if one of the `len` values at `values` is NaN or
    /// infinite: `v − v` is +0 for every finite `v` and NaN otherwise, so the bits of those
    /// differences, or-ed together, are 0 exactly when all are finite.
    fn scan(&mut self, values: Value, len: Value) {
        let bits = self.fb.declare_var(types::I64);
        let zero = self.int(0);
        self.fb.def_var(bits, zero);
        let _ = self.repeat_range(zero, len, &mut |e, i| {
            let v = e.load_at(values, i);
            let difference = e.fb.ins().fsub(v, v);
            let difference = e.fb.ins().bitcast(types::I64, MemFlagsData::new(), difference);
            let so_far = e.fb.use_var(bits);
            let so_far = e.fb.ins().bor(so_far, difference);
            e.fb.def_var(bits, so_far);
            Ok(())
        });
        let bits = self.fb.use_var(bits);
        let _ = self.when(bits, &mut |e| {
            let flag = e.finite_flag();
            let nan = e.fb.ins().f64const(f64::NAN);
            e.fb.ins().store(MemFlagsData::trusted(), nan, flag, 0);
            Ok(())
        });
    }

    /// Sets this thread's finiteness flag to 0 (all finite), at the start of a step.
    pub(super) fn clear_finite_flag(&mut self) {
        let flag = self.finite_flag();
        let zero = self.fb.ins().f64const(0.0);
        self.fb.ins().store(MemFlagsData::trusted(), zero, flag, 0);
    }

    /// Waits at the team's barrier (nothing for a single thread).
    pub(super) fn meet(&mut self) {
        if let Some(team) = &self.team {
            let (meet, barrier) = (team.meet, team.barrier);
            self.fb.ins().call(meet, &[barrier]);
            self.meetings += 1;
        }
    }

    /// [`Self::repeat`] over this thread's share of `0..n`: all of it for a single thread or one
    /// that runs whole statements, else the contiguous part `n·t/T .. n·(t+1)/T` of thread t of T.
    fn repeat_part(
        &mut self,
        n: usize,
        body: &mut dyn FnMut(&mut Self, Value) -> Result<(), JitError>,
    ) -> Result<(), JitError> {
        let Some(team) = self.team.as_ref().filter(|t| !t.whole) else {
            return self.repeat(n, body);
        };
        if n == 0 {
            return Ok(());
        }
        let (thread, threads) = (team.thread, team.threads as i64);
        let share = |e: &mut Self, t: Value| {
            let scaled = e.fb.ins().imul_imm_s(t, n as i64);
            let count = e.fb.ins().iconst(types::I64, threads);
            e.fb.ins().udiv(scaled, count)
        };
        let start = share(self, thread);
        let next_thread = self.fb.ins().iadd_imm_s(thread, 1);
        let end = share(self, next_thread);
        self.repeat_range(start, end, body)
    }

    /// `for i in start..end { body(i) }` for values known only when the code runs.
    fn repeat_range(
        &mut self,
        start: Value,
        end: Value,
        body: &mut dyn FnMut(&mut Self, Value) -> Result<(), JitError>,
    ) -> Result<(), JitError> {
        let inner = self.fb.create_block();
        let exit = self.fb.create_block();
        self.fb.append_block_param(inner, types::I64);
        let any = self.fb.ins().icmp(IntCC::SignedLessThan, start, end);
        self.fb.ins().brif(any, inner, &[BlockArg::from(start)], exit, &[]);
        self.fb.switch_to_block(inner);
        let i = self.fb.block_params(inner)[0];
        body(self, i)?;
        let next = self.fb.ins().iadd_imm_s(i, 1);
        let more = self.fb.ins().icmp(IntCC::SignedLessThan, next, end);
        self.fb.ins().brif(more, inner, &[BlockArg::from(next)], exit, &[]);
        self.fb.seal_block(inner);
        self.fb.switch_to_block(exit);
        self.fb.seal_block(exit);
        Ok(())
    }

    /// This thread's part `start..end` of `0..n`, split in pairs: thread t of T starts at
    /// `2·(⌊n/2⌋·t/T)` and the last ends at `n` (so only the last has an odd count); `0..n` for
    /// a single thread or a thread that runs whole statements.
    fn pair_share(&mut self, n: usize) -> (Value, Value) {
        let Some(team) = self.team.as_ref().filter(|t| !t.whole) else {
            return (self.int(0), self.int(n));
        };
        let (thread, threads) = (team.thread, team.threads as i64);
        let first = |e: &mut Self, t: Value| {
            let scaled = e.fb.ins().imul_imm_s(t, (n / 2) as i64);
            let count = e.fb.ins().iconst(types::I64, threads);
            let p = e.fb.ins().udiv(scaled, count);
            e.fb.ins().imul_imm_s(p, 2)
        };
        let start = first(self, thread);
        let next_thread = self.fb.ins().iadd_imm_s(thread, 1);
        let next = first(self, next_thread);
        let is_last = self.fb.ins().icmp_imm_s(IntCC::Equal, thread, threads - 1);
        let all = self.int(n);
        let end = self.fb.ins().select(is_last, all, next);
        (start, end)
    }

    /// This thread's batch rows, `0..batch` split as [`Self::pair_share`] splits it. Every
    /// row-local statement (see [`schedule`]) splits the batch this way, so a thread reads only
    /// rows it wrote. `None` for a single thread or a thread that runs whole statements.
    fn row_share(&mut self) -> Option<(Value, Value)> {
        self.team.as_ref().filter(|t| !t.whole)?;
        Some(self.pair_share(self.batch))
    }

    /// [`Self::repeat`] over this thread's batch rows (see [`Self::row_share`]).
    fn repeat_rows(&mut self, body: &mut dyn FnMut(&mut Self, Value) -> Result<(), JitError>) -> Result<(), JitError> {
        match self.row_share() {
            Some((start, end)) => self.repeat_range(start, end, body),
            None => self.repeat(self.batch, body),
        }
    }

    /// Runs `body` only when the integer `cond` is non-zero.
    fn when(&mut self, cond: Value, body: &mut dyn FnMut(&mut Self) -> Result<(), JitError>) -> Result<(), JitError> {
        let then = self.fb.create_block();
        let exit = self.fb.create_block();
        self.fb.ins().brif(cond, then, &[], exit, &[]);
        self.fb.switch_to_block(then);
        self.fb.seal_block(then);
        body(self)?;
        self.fb.ins().jump(exit, &[]);
        self.fb.switch_to_block(exit);
        self.fb.seal_block(exit);
        Ok(())
    }

    /// Runs `body` on thread `owner` of the team only (on every thread for `None`).
    pub(super) fn on_thread(
        &mut self,
        owner: Option<usize>,
        body: &mut dyn FnMut(&mut Self) -> Result<(), JitError>,
    ) -> Result<(), JitError> {
        match (owner, &self.team) {
            (Some(owner), Some(team)) => {
                let mine = self.fb.ins().icmp_imm_s(IntCC::Equal, team.thread, owner as i64);
                self.when(mine, body)
            }
            _ => body(self),
        }
    }

    /// Runs `body` only in steps that compute gradients.
    pub(super) fn when_learning(
        &mut self,
        body: &mut dyn FnMut(&mut Self) -> Result<(), JitError>,
    ) -> Result<(), JitError> {
        self.when(self.learn, body)
    }

    /// Runs `body` on the team's last thread only (on the only thread when alone, or on the
    /// thread that runs the whole statement).
    fn on_last_thread(&mut self, body: &mut dyn FnMut(&mut Self) -> Result<(), JitError>) -> Result<(), JitError> {
        let Some(team) = self.team.as_ref().filter(|t| !t.whole) else {
            return body(self);
        };
        let last = team.threads as i64 - 1;
        let is_last = self.fb.ins().icmp_imm_s(IntCC::Equal, team.thread, last);
        self.when(is_last, body)
    }

    pub(super) fn stmt(&mut self, stmt: &Stmt) -> Result<(), JitError> {
        self.bases.clear();
        for b in stmt_buffers(self.program, stmt) {
            self.base(b);
        }
        let batch = self.batch;
        match stmt {
            Stmt::Map { len, outs } => {
                let len = *len;
                let outs = outs.clone();
                let mut bufs: Vec<usize> = stmt_buffers(self.program, stmt);
                bufs.sort_unstable();
                bufs.dedup();
                // Function calls are evaluated one loop each into scratch arrays, the way the
                // interpreter evaluates them over whole vectors: around a call every live
                // floating-point register is spilled, so a loop with one call and little else
                // live is far cheaper than one fused loop with many calls. Arithmetic between
                // calls is fused into the loops that need it; per element the operations are
                // the interpreter's, so results are identical.
                let roots: Vec<Id> = outs.iter().map(|o| o.1).collect();
                let calls: Vec<Id> = self
                    .program
                    .graph
                    .reachable(&roots)
                    .into_iter()
                    .filter(|id| match self.program.graph.node(*id) {
                        Node::Call(f, _) => !inlined(*f),
                        Node::Pow(..) => true,
                        _ => false,
                    })
                    .collect();
                let loops = self.output_loops(&outs);
                let row_tanhs = match loops.as_slice() {
                    [first, second] if len >= ROW_TANH_MIN_LEN => self.row_tanhs(first, second, &calls, len),
                    _ => Vec::new(),
                };
                let m = batch * len;
                let slots: HashMap<Id, usize> = calls
                    .iter()
                    .chain(row_tanhs.iter().map(|(id, _)| id))
                    .enumerate()
                    .map(|(k, id)| (*id, k * m))
                    .collect();
                self.scratch_len = self.scratch_len.max((calls.len() + row_tanhs.len()) * m);
                let mut phases: Vec<Phase> = calls.iter().map(|c| Phase::Call(*c)).collect();
                let mut loops = loops.into_iter().map(Phase::Outputs);
                phases.extend(loops.next());
                phases.extend(row_tanhs.iter().map(|&(tanh, arg)| Phase::Tanh { tanh, arg }));
                phases.extend(loops);
                // The outputs earlier loops of this statement stored: later loops load them.
                let mut stored: HashMap<Id, usize> = HashMap::new();
                for phase in phases {
                    self.repeat_rows(&mut |e, b| {
                        if let &Phase::Tanh { tanh, arg } = &phase {
                            // The row's `tanh` in one call, into the scratch the next loop reads.
                            let base = e.base(arg);
                            let src = e.offset(base, b, e.program.buffers[arg].len);
                            let scratch = e.scratch;
                            let srow = e.offset(scratch, b, len);
                            let dst = e.fb.ins().iadd_imm_s(srow, (slots[&tanh] * 8) as i64);
                            let n = e.int(len);
                            let f = e.shim(tanh_rows::NAME);
                            e.fb.ins().call(f, &[src, dst, n]);
                            return Ok(());
                        }
                        let mut rows = HashMap::new();
                        for &buf in &bufs {
                            let base = e.base(buf);
                            let decl = &e.program.buffers[buf];
                            let ptr = if decl.layout == Layout::Batch {
                                e.offset(base, b, decl.len)
                            } else {
                                base
                            };
                            rows.insert(buf, ptr);
                        }
                        let scratch = e.scratch;
                        let srow = e.offset(scratch, b, len);
                        let computing = match &phase {
                            Phase::Call(call) => Some(*call),
                            Phase::Outputs(_) | Phase::Tanh { .. } => None,
                        };
                        // `x − x` is 0 for a finite x and NaN otherwise: summed over the
                        // checked outputs, NaN exactly when one of them is not finite.
                        // (Accumulators for pairs of elements and for an odd last one.)
                        let check = match &phase {
                            Phase::Outputs(outs) => outs.iter().any(|o| e.checked_outs.contains(&o.0)),
                            Phase::Call(_) | Phase::Tanh { .. } => false,
                        };
                        let finite_sums = check.then(|| {
                            let (pairs, last) = (e.fb.declare_var(types::F64X2), e.fb.declare_var(types::F64));
                            let zero = e.fb.ins().f64const(0.0);
                            e.fb.def_var(last, zero);
                            let zeros = e.fb.ins().splat(types::F64X2, zero);
                            e.fb.def_var(pairs, zeros);
                            (pairs, last)
                        });
                        let element = |e: &mut Self, i: Value, ty: types::Type| -> Result<(), JitError> {
                            let mut memo = HashMap::new();
                            let ctx = Elem {
                                rows: &rows,
                                i,
                                ty,
                                scratch_row: srow,
                                slots: &slots,
                                stored: &stored,
                                computing,
                            };
                            match &phase {
                                Phase::Call(call) => {
                                    let v = e.expr(*call, &ctx, &mut memo)?;
                                    let slot = e.fb.ins().iadd_imm_s(srow, (slots[call] * 8) as i64);
                                    e.store_at(slot, i, v);
                                }
                                Phase::Tanh { .. } => {}
                                Phase::Outputs(outs) => {
                                    let values: Vec<Value> = outs
                                        .iter()
                                        .map(|(_, id)| e.expr(*id, &ctx, &mut memo))
                                        .collect::<Result<_, _>>()?;
                                    for ((buf, _), v) in outs.iter().zip(values) {
                                        e.store_at(rows[buf], i, v);
                                        if let Some((pairs, last)) = finite_sums
                                            && e.checked_outs.contains(buf)
                                        {
                                            let ok = if ty == types::F64X2 { pairs } else { last };
                                            let zero_if_finite = e.fb.ins().fsub(v, v);
                                            let sum = e.fb.use_var(ok);
                                            let sum = e.fb.ins().fadd(sum, zero_if_finite);
                                            e.fb.def_var(ok, sum);
                                        }
                                    }
                                }
                            }
                            Ok(())
                        };
                        if computing.is_some() {
                            // One call per element: the loop stays scalar.
                            return e.repeat(len, &mut |e, i| element(e, i, types::F64));
                        }
                        // The arithmetic runs on two elements at once, one per lane (lane-wise
                        // IEEE operations: the same results), and an odd last element alone.
                        e.repeat(len / 2, &mut |e, k| {
                            let i = e.fb.ins().imul_imm_s(k, 2);
                            element(e, i, types::F64X2)
                        })?;
                        if len % 2 == 1 {
                            let i = e.fb.ins().iconst(types::I64, (len - 1) as i64);
                            element(e, i, types::F64)?;
                        }
                        if let Some((pairs, last)) = finite_sums {
                            let pairs = e.fb.use_var(pairs);
                            let low = e.fb.ins().extractlane(pairs, 0);
                            let high = e.fb.ins().extractlane(pairs, 1);
                            let last = e.fb.use_var(last);
                            let flag = e.finite_flag();
                            let before = e.fb.ins().load(types::F64, MemFlagsData::trusted(), flag, 0);
                            let sum = [low, high, last].into_iter().fold(before, |s, x| e.fb.ins().fadd(s, x));
                            e.fb.ins().store(MemFlagsData::trusted(), sum, flag, 0);
                        }
                        Ok(())
                    })?;
                    if let Phase::Outputs(outs) = phase {
                        stored.extend(outs.iter().map(|&(buf, id)| (id, buf)));
                    }
                }
                Ok(())
            }
            // The products are calls of Rust loops built for the widest vectors the CPU has
            // (see [`products`]); each sum runs in the interpreter's order, so results agree bit
            // for bit. A team splits them as the row-local statements split the batch rows (or,
            // for e·rᵀ, the rows of the gradient).
            &Stmt::MatVec {
                out,
                w,
                rows,
                cols,
                x,
                accumulate,
            } => {
                self.scratch_len = self.scratch_len.max(products::MAT_VEC_SCRATCH_PER_COLUMN * cols);
                let (start, end) = self.pair_share(batch);
                let (wb, xb, ob) = (self.base(w), self.base(x), self.base(out));
                let [rows, cols, accumulate] = [rows, cols, usize::from(accumulate)].map(|v| self.int(v));
                let mat_vec = self.shim("gle_mat_vec");
                let scratch = self.scratch;
                self.fb
                    .ins()
                    .call(mat_vec, &[wb, xb, ob, rows, cols, start, end, accumulate, scratch]);
                Ok(())
            }
            &Stmt::MatTVec { out, w, rows, cols, x } => {
                // out[b][j] = Σ_i W[i][j]·x[b][i]: the rows of W summed, one output per batch row.
                let (start, end) = self.pair_share(batch);
                let (wb, xb, ob) = (self.base(w), self.base(x), self.base(out));
                let sums = ColumnSums {
                    src: wb,
                    src_stride: cols,
                    scales: xb,
                    term_stride: 1,
                    output_stride: rows,
                    dst: ob,
                    dst_stride: cols,
                    terms: rows,
                    cols: self.int(cols),
                };
                self.call_column_sums(sums, start, end, Finish::Store)
            }
            &Stmt::Outer {
                grad,
                rows,
                cols,
                a,
                x,
                negate,
            } => {
                // ±Σ_b a[b][i]·x[b]ᵀ / batch, one output per row i of the gradient; or, for an
                // absorbed update, the parameter's SGD step against it, in place of the gradient.
                let (target, finish) = match self.absorbing {
                    Some((param, slot)) => {
                        let rate = self.absorbed_rate(slot);
                        (param, Finish::SgdStep { negate, rate })
                    }
                    None => (grad, Finish::Mean { negate }),
                };
                let (start, end) = self.pair_share(rows);
                let (ab, xb, tb) = (self.base(a), self.base(x), self.base(target));
                let sums = ColumnSums {
                    src: xb,
                    src_stride: cols,
                    scales: ab,
                    term_stride: rows,
                    output_stride: 1,
                    dst: tb,
                    dst_stride: cols,
                    terms: batch,
                    cols: self.int(cols),
                };
                self.call_column_sums(sums, start, end, finish)
            }
            &Stmt::Mean { grad, len, x, negate } => {
                // ±Σ_b x[b][j] / batch: the batch rows summed with factors 1.0 (exact: x·1.0 is
                // x), a team's threads each taking a part of the columns.
                let (start, end) = self.pair_share(len);
                let (gb, xb) = (self.base(grad), self.base(x));
                let first = self.fb.ins().imul_imm_s(start, 8);
                let (src, dst) = (self.fb.ins().iadd(xb, first), self.fb.ins().iadd(gb, first));
                let cols = self.fb.ins().isub(end, start);
                let ones = self.pool_address(1.0)?;
                let sums = ColumnSums {
                    src,
                    src_stride: len,
                    scales: ones,
                    term_stride: 0,
                    output_stride: 0,
                    dst,
                    dst_stride: len,
                    terms: batch,
                    cols,
                };
                let (zero, one) = (self.int(0), self.int(1));
                self.call_column_sums(sums, zero, one, Finish::Mean { negate })
            }
            &Stmt::Softmax { out, x, len } => self.repeat_rows(&mut |e, b| {
                let (xb, ob) = (e.base(x), e.base(out));
                let xrow = e.offset(xb, b, len);
                let orow = e.offset(ob, b, len);
                let max_var = e.fb.declare_var(types::F64);
                let neg_inf = e.fb.ins().f64const(f64::NEG_INFINITY);
                e.fb.def_var(max_var, neg_inf);
                let fmax = e.shim("gle_fmax");
                e.repeat(len, &mut |e, i| {
                    let v = e.load_at(xrow, i);
                    let m = e.fb.use_var(max_var);
                    let call = e.fb.ins().call(fmax, &[m, v]);
                    let r = e.fb.inst_results(call)[0];
                    e.fb.def_var(max_var, r);
                    Ok(())
                })?;
                let sum_var = e.fb.declare_var(types::F64);
                let zero = e.fb.ins().f64const(0.0);
                e.fb.def_var(sum_var, zero);
                let exp = e.shim("gle_exp");
                e.repeat(len, &mut |e, i| {
                    let v = e.load_at(xrow, i);
                    let m = e.fb.use_var(max_var);
                    let d = e.fb.ins().fsub(v, m);
                    let call = e.fb.ins().call(exp, &[d]);
                    let ex = e.fb.inst_results(call)[0];
                    e.store_at(orow, i, ex);
                    let s = e.fb.use_var(sum_var);
                    let s2 = e.fb.ins().fadd(s, ex);
                    e.fb.def_var(sum_var, s2);
                    Ok(())
                })?;
                e.repeat(len, &mut |e, i| {
                    let ex = e.load_at(orow, i);
                    let s = e.fb.use_var(sum_var);
                    let q = e.fb.ins().fdiv(ex, s);
                    e.store_at(orow, i, q);
                    Ok(())
                })
            }),
        }
    }

    /// The outputs of a `Map` in the loops that store them, in order. Outputs that need an
    /// inlined `tanh` go in a second loop when others need none, and that loop loads what the
    /// first stored (the look-ahead `ŭ` of a neuron's `tanh(ŭ)`) instead of computing it again.
    /// A loop iteration is one long chain of dependent operations (two divisions, then the
    /// `tanh`), and the processor overlaps only as many iterations as its queues hold: two
    /// shorter loops overlap more. Only batch outputs are split, and only when the second loop
    /// reads none of the first loop's buffers as an operand (which would then be the new
    /// values); per element the operations are those of one loop, so results are identical.
    fn output_loops(&self, outs: &[(usize, Id)]) -> Vec<Vec<(usize, Id)>> {
        let graph = &self.program.graph;
        let needs_tanh = |id: Id| {
            graph
                .reachable(&[id])
                .into_iter()
                .any(|n| matches!(graph.node(n), Node::Call(Fun::B(Builtin::Tanh), _)))
        };
        let (second, first): (Vec<_>, Vec<_>) = outs.iter().copied().partition(|o: &(usize, Id)| needs_tanh(o.1));
        let batch_outputs = outs.iter().all(|o| self.program.buffers[o.0].layout == Layout::Batch);
        let second_roots: Vec<Id> = second.iter().map(|o| o.1).collect();
        let reads_first = graph
            .reachable(&second_roots)
            .into_iter()
            .any(|n| matches!(graph.node(n), Node::Leaf(Leaf::Buf(b)) if first.iter().any(|o| o.0 == *b)));
        if first.is_empty() || second.is_empty() || !batch_outputs || reads_first {
            return vec![outs.to_vec()];
        }
        vec![first, second]
    }

    /// The `tanh` calls of a map's `second` output loop that take an output of its `first`
    /// loop, with that output's buffer: computed over each row of `len` values by
    /// `gle_tanh_row` between the loops (four lanes, a branch per four values instead of per
    /// pair, [`tanh_rows`]), unless a function call, evaluated before the first loop, needs one
    /// (or the buffer's rows were shorter than the map's, which the call would read past).
    fn row_tanhs(&self, first: &[(usize, Id)], second: &[(usize, Id)], calls: &[Id], len: usize) -> Vec<(Id, usize)> {
        let graph = &self.program.graph;
        let roots: Vec<Id> = second.iter().map(|o| o.1).collect();
        let before_first: HashSet<Id> = graph.reachable(calls).into_iter().collect();
        graph
            .reachable(&roots)
            .into_iter()
            .filter_map(|id| match graph.node(id) {
                Node::Call(Fun::B(Builtin::Tanh), args) if args.len() == 1 && !before_first.contains(&id) => first
                    .iter()
                    .find(|o| o.1 == args[0] && self.program.buffers[o.0].len >= len)
                    .map(|o| (id, o.0)),
                _ => None,
            })
            .collect()
    }

    /// This step's rate of the absorbed update in `slot` (see [`compile_absorbing`]).
    fn absorbed_rate(&mut self, slot: usize) -> Value {
        let at = ((self.program.buffers.len() + 1) * 8) as i32;
        let rates = self.fb.ins().load(types::I64, MemFlagsData::trusted(), self.bufs, at);
        self.fb
            .ins()
            .load(types::F64, MemFlagsData::trusted(), rates, (slot * 8) as i32)
    }

    /// The statements of a [`RowPass`] as one call of `gle_fused_rows`: one pass over W, which
    /// writes the gradient (or steps W) only in learning steps.
    pub(super) fn row_pass(&mut self, pass: &RowPass) -> Result<(), JitError> {
        let &Stmt::MatVec {
            out,
            w,
            rows,
            cols,
            x,
            accumulate,
        } = &self.program.stmts[pass.mat_vec]
        else {
            return Err(JitError("a row pass starts from a W·x statement".into()));
        };
        let down = match pass.mat_t_vec.map(|k| &self.program.stmts[k]) {
            Some(&Stmt::MatTVec { out, x, .. }) => Some((out, x)),
            None => None,
            Some(_) => return Err(JitError("a row pass computes Wᵀ·e from a Wᵀ·e statement".into())),
        };
        let learn = match pass.outer.map(|(k, slot)| (&self.program.stmts[k], slot)) {
            Some((&Stmt::Outer { grad, a, negate, .. }, slot)) => Some((grad, a, negate, slot)),
            None => None,
            Some(_) => return Err(JitError("a row pass computes a gradient from an e·rᵀ statement".into())),
        };
        self.bases.clear();
        let (wb, xb, ob) = (self.base(w), self.base(x), self.base(out));
        // The error `e` both the gradient and `Wᵀ·e` read; `d` where `Wᵀ·e` goes and `grad`
        // where the gradient goes (W's address where there is none, unused).
        let e = learn.map(|l| l.1).or(down.map(|d| d.1)).unwrap_or(x);
        let eb = self.base(e);
        let db = match down {
            Some((d, _)) => self.base(d),
            None => ob,
        };
        let (gb, rate, negate, mode) = match learn {
            Some((grad, _, negate, slot)) => {
                let (gb, rate, mode) = match slot {
                    Some(slot) => (wb, self.absorbed_rate(slot), products::SGD_STEP),
                    None => (self.base(grad), self.fb.ins().f64const(0.0), products::MEAN),
                };
                // Only in steps that compute gradients.
                let mode = self.fb.ins().imul_imm_s(self.learn, mode);
                (gb, rate, self.int(usize::from(negate)), mode)
            }
            None => (wb, self.fb.ins().f64const(0.0), self.int(0), self.int(0)),
        };
        let [cols, first, end, accumulate, backward] =
            [cols, 0, rows, usize::from(accumulate), usize::from(down.is_some())].map(|v| self.int(v));
        let count = self.fb.ins().f64const(self.batch as f64);
        let f = self.shim("gle_fused_rows");
        self.fb.ins().call(
            f,
            &[
                wb, xb, ob, eb, db, gb, cols, first, end, accumulate, mode, backward, negate, count, rate,
            ],
        );
        Ok(())
    }

    /// An `i64` constant.
    fn int(&mut self, v: usize) -> Value {
        self.fb.ins().iconst(types::I64, v as i64)
    }

    /// Calls the `gle_column_sums` product for outputs `start..end` of `sums`.
    fn call_column_sums(&mut self, sums: ColumnSums, start: Value, end: Value, finish: Finish) -> Result<(), JitError> {
        let (kind, negate, rate) = match finish {
            Finish::Store => (products::STORE, false, None),
            Finish::Mean { negate } => (products::MEAN, negate, None),
            Finish::SgdStep { negate, rate } => (products::SGD_STEP, negate, Some(rate)),
        };
        let ints = [
            sums.src_stride,
            sums.term_stride,
            sums.output_stride,
            sums.dst_stride,
            sums.terms,
        ]
        .map(|v| self.int(v));
        let [src_stride, term_stride, output_stride, dst_stride, terms] = ints;
        let kind = self.fb.ins().iconst(types::I64, kind);
        let negate = self.int(usize::from(negate));
        let count = self.fb.ins().f64const(self.batch as f64);
        let rate = rate.unwrap_or_else(|| self.fb.ins().f64const(0.0));
        let f = self.shim("gle_column_sums");
        self.fb.ins().call(
            f,
            &[
                sums.src,
                src_stride,
                sums.scales,
                term_stride,
                output_stride,
                sums.dst,
                dst_stride,
                terms,
                sums.cols,
                start,
                end,
                kind,
                negate,
                count,
                rate,
            ],
        );
        Ok(())
    }

    /// `dst = src` for buffers of `n` values. A team splits batch buffers by rows (as
    /// [`Self::row_share`]) and shared ones evenly.
    pub(super) fn copy(&mut self, dst: usize, src: usize, n: usize) {
        self.bases.clear();
        let (d, s) = (self.base(dst), self.base(src));
        let mut pair = |e: &mut Self, k: Value| {
            let i = e.fb.ins().imul_imm_s(k, 2);
            let v = e.load_typed(s, i, types::F64X2);
            e.store_at(d, i, v);
            Ok(())
        };
        let rows = (self.program.buffers[dst].layout == Layout::Batch)
            .then(|| self.row_share())
            .flatten();
        let _ = match rows {
            Some((first, end)) => {
                // Pairs of values from the first row's to the end row's; row starts are
                // even, so only the last thread's part can end in an odd value (copied below).
                let len = self.program.buffers[dst].len as i64;
                let first = self.fb.ins().imul_imm_s(first, len);
                let first = self.fb.ins().ushr_imm_u(first, 1);
                let end = self.fb.ins().imul_imm_s(end, len);
                let end = self.fb.ins().ushr_imm_u(end, 1);
                self.repeat_range(first, end, &mut pair)
            }
            None => self.repeat_part(n / 2, &mut pair),
        };
        if n % 2 == 1 {
            let _ = self.on_last_thread(&mut |e| {
                let i = e.fb.ins().iconst(types::I64, (n - 1) as i64);
                let v = e.load_at(s, i);
                e.store_at(d, i, v);
                Ok(())
            });
        }
    }

    /// `gle_ir::math::tanh` of the two lanes of the F64X2 `x`, operation for operation: each
    /// lane takes the branch the scalar function takes. A branch is computed only when some
    /// lane needs it (both when the lanes differ, then each lane selects its own).
    fn tanh(&mut self, x: Value) -> Value {
        use gle_ir::math::TANH_SMALL;
        let ty = self.fb.func.dfg.value_type(x);
        let a = self.fb.ins().fabs(x);
        let small_limit = self.constant(TANH_SMALL, ty);
        let is_small = self.fb.ins().fcmp(FloatCC::LessThan, a, small_limit);
        let lanes_small = self.fb.ins().vhigh_bits(types::I8, is_small);
        let any_small = self.fb.ins().icmp_imm_u(IntCC::NotEqual, lanes_small, 0);
        let all_small = self.fb.ins().icmp_imm_u(IntCC::Equal, lanes_small, 3);
        let zero = self.constant(0.0, ty);
        let small = self.value_if(any_small, zero, &mut |e| e.tanh_rational(a));
        let large = self.value_if_not(all_small, zero, &mut |e| e.tanh_exponential(a));
        let magnitude = self.select_lanes(is_small, small, large);
        // copysign(magnitude, x) on the bits (x64 has no vector fcopysign).
        let (int_ty, flags) = (types::I64X2, MemFlagsData::new().with_endianness(Endianness::Little));
        let m = self.fb.ins().bitcast(int_ty, flags, magnitude);
        let sign = self.fb.ins().bitcast(int_ty, flags, x);
        let sign_bit = self.fb.ins().iconst(types::I64, i64::MIN);
        let sign_bit = self.fb.ins().splat(int_ty, sign_bit);
        let m = self.fb.ins().band_not(m, sign_bit);
        let sign = self.fb.ins().band(sign, sign_bit);
        let bits = self.fb.ins().bor(m, sign);
        self.fb.ins().bitcast(ty, flags, bits)
    }

    /// `tanh(a)` for `0 ≤ a < TANH_SMALL`: `a + a·(z·P(z)/Q(z))` with `z = a²`.
    fn tanh_rational(&mut self, a: Value) -> Value {
        use gle_ir::math::{TANH_P, TANH_Q};
        let ty = self.fb.func.dfg.value_type(a);
        let c = |e: &mut Self, v: f64| e.constant(v, ty);
        let z = self.fb.ins().fmul(a, a);
        let p0 = c(self, TANH_P[0]);
        let p = self.fb.ins().fmul(p0, z);
        let p1 = c(self, TANH_P[1]);
        let p = self.fb.ins().fadd(p, p1);
        let p = self.fb.ins().fmul(p, z);
        let p2 = c(self, TANH_P[2]);
        let p = self.fb.ins().fadd(p, p2);
        let q0 = c(self, TANH_Q[0]);
        let q = self.fb.ins().fadd(z, q0);
        let q = self.fb.ins().fmul(q, z);
        let q1 = c(self, TANH_Q[1]);
        let q = self.fb.ins().fadd(q, q1);
        let q = self.fb.ins().fmul(q, z);
        let q2 = c(self, TANH_Q[2]);
        let q = self.fb.ins().fadd(q, q2);
        let zp = self.fb.ins().fmul(z, p);
        let ratio = self.fb.ins().fdiv(zp, q);
        let prod = self.fb.ins().fmul(a, ratio);
        self.fb.ins().fadd(a, prod)
    }

    /// `tanh(a)` for `a ≥ TANH_SMALL` (or NaN): `1 − 2/(e^{2a} + 1)`, `a` clamped to
    /// `TANH_SATURATE`, the exponential as `gle_ir::math`'s `exp_moderate`.
    fn tanh_exponential(&mut self, a: Value) -> Value {
        use gle_ir::math::{EXP_TAYLOR, LN2_HI, LN2_LO, LOG2_E, ROUND_MAGIC, TANH_SATURATE};
        let ty = self.fb.func.dfg.value_type(a);
        let c = |e: &mut Self, v: f64| e.constant(v, ty);
        let limit = c(self, TANH_SATURATE);
        let over = self.fb.ins().fcmp(FloatCC::GreaterThan, a, limit);
        let clamped = self.select_lanes(over, limit, a);
        let w = self.fb.ins().fadd(clamped, clamped);
        let log2e = c(self, LOG2_E);
        let magic = c(self, ROUND_MAGIC);
        let t = self.fb.ins().fmul(w, log2e);
        let t = self.fb.ins().fadd(t, magic);
        let k = self.fb.ins().fsub(t, magic);
        let hi = c(self, LN2_HI);
        let lo = c(self, LN2_LO);
        let khi = self.fb.ins().fmul(k, hi);
        let r = self.fb.ins().fsub(w, khi);
        let klo = self.fb.ins().fmul(k, lo);
        let r = self.fb.ins().fsub(r, klo);
        let mut s = c(self, EXP_TAYLOR[0]);
        for coef in &EXP_TAYLOR[1..] {
            let sr = self.fb.ins().fmul(s, r);
            let cv = c(self, *coef);
            s = self.fb.ins().fadd(sr, cv);
        }
        let one = c(self, 1.0);
        let sr = self.fb.ins().fmul(s, r);
        let er = self.fb.ins().fadd(sr, one);
        let er = self.fb.ins().fmul(er, r);
        let er = self.fb.ins().fadd(er, one);
        // 2ᵏ from the bits of t: (bits(t) − bits(magic) + 1023) << 52.
        let (int_ty, flags) = (types::I64X2, MemFlagsData::new().with_endianness(Endianness::Little));
        let bits = self.fb.ins().bitcast(int_ty, flags, t);
        let offset = self
            .fb
            .ins()
            .iconst(types::I64, 1023i64.wrapping_sub(ROUND_MAGIC.to_bits() as i64));
        let offset = self.fb.ins().splat(int_ty, offset);
        let bits = self.fb.ins().iadd(bits, offset);
        let bits = self.fb.ins().ishl_imm_u(bits, 52);
        let scale = self.fb.ins().bitcast(ty, flags, bits);
        let e = self.fb.ins().fmul(er, scale);
        let two = c(self, 2.0);
        let e1 = self.fb.ins().fadd(e, one);
        let q = self.fb.ins().fdiv(two, e1);
        self.fb.ins().fsub(one, q)
    }

    /// `cond ? then() : otherwise` for an integer `cond`, `then` computed only when it holds.
    fn value_if(&mut self, cond: Value, otherwise: Value, then: &mut dyn FnMut(&mut Self) -> Value) -> Value {
        let ty = self.fb.func.dfg.value_type(otherwise);
        let compute = self.fb.create_block();
        let merge = self.fb.create_block();
        self.fb.append_block_param(merge, ty);
        self.fb
            .ins()
            .brif(cond, compute, &[], merge, &[BlockArg::from(otherwise)]);
        self.fb.switch_to_block(compute);
        self.fb.seal_block(compute);
        let v = then(self);
        self.fb.ins().jump(merge, &[BlockArg::from(v)]);
        self.fb.switch_to_block(merge);
        self.fb.seal_block(merge);
        self.fb.block_params(merge)[0]
    }

    /// `cond ? otherwise : then()` for an integer `cond`, `then` computed only when it fails.
    fn value_if_not(&mut self, cond: Value, otherwise: Value, then: &mut dyn FnMut(&mut Self) -> Value) -> Value {
        let fails = self.fb.ins().icmp_imm_u(IntCC::Equal, cond, 0);
        self.value_if(fails, otherwise, then)
    }

    /// Function `f` (one that [`piecewise`] accepts) of `args`, written as comparisons and
    /// selections that give, per lane, the reference function's bits (`gle_derive::sym::apply`):
    /// `clamp(x, lo, hi)` as Rust's `f64::clamp`, `min`/`max` as `gle_ir::math`'s, a NaN
    /// argument where the reference passes it on or drops it.
    fn piecewise(&mut self, f: Fun, args: &[Value]) -> Result<Value, JitError> {
        let ty = self.fb.func.dfg.value_type(args[0]);
        let c = |e: &mut Self, v: f64| e.constant(v, ty);
        let arity = if matches!(f, Fun::B(Builtin::Min | Builtin::Max)) {
            2
        } else if f == Fun::B(Builtin::Clamp) {
            3
        } else {
            1
        };
        if args.len() != arity {
            return Err(JitError(format!(
                "{} takes {arity} arguments, not {}",
                f.name(),
                args.len()
            )));
        }
        let x = args[0];
        // `x` limited to `lo..=hi` as `f64::clamp` does it: `lo` where `x < lo`, then `hi` where
        // the result is `> hi`.
        let clamp = |e: &mut Self, lo: f64, hi: f64| {
            let (lo, hi) = (c(e, lo), c(e, hi));
            let low = e.choose(FloatCC::LessThan, x, lo, lo, x);
            e.choose(FloatCC::GreaterThan, low, hi, hi, low)
        };
        let (zero, one) = (c(self, 0.0), c(self, 1.0));
        Ok(match f {
            Fun::Positive => self.choose(FloatCC::GreaterThan, x, zero, one, zero),
            Fun::Sign => {
                let minus_one = c(self, -1.0);
                let positive = self.choose(FloatCC::GreaterThan, x, zero, one, zero);
                self.choose(FloatCC::LessThan, x, zero, minus_one, positive)
            }
            Fun::B(Builtin::Step) => self.choose(FloatCC::GreaterThanOrEqual, x, zero, one, zero),
            Fun::B(Builtin::Abs) => self.fb.ins().fabs(x),
            Fun::B(Builtin::HardSigmoid) => clamp(self, 0.0, 1.0),
            Fun::B(Builtin::HardTanh) => clamp(self, -1.0, 1.0),
            Fun::B(Builtin::Relu) => self.max(x, zero),
            Fun::B(Builtin::Max) => self.max(x, args[1]),
            Fun::B(Builtin::Min) => self.min(x, args[1]),
            Fun::B(Builtin::Clamp) => {
                let low = self.max(x, args[1]);
                self.min(low, args[2])
            }
            _ => return Err(JitError(format!("{} is not piecewise", f.name()))),
        })
    }

    /// `gle_ir::math::max(x, y)`: `y` where `x` is NaN or `y > x`, otherwise `x`.
    fn max(&mut self, x: Value, y: Value) -> Value {
        let larger = self.choose(FloatCC::GreaterThan, y, x, y, x);
        self.choose(FloatCC::Unordered, x, x, y, larger)
    }

    /// `gle_ir::math::min(x, y)`: `y` where `x` is NaN or `y < x`, otherwise `x`.
    fn min(&mut self, x: Value, y: Value) -> Value {
        let smaller = self.choose(FloatCC::LessThan, y, x, y, x);
        self.choose(FloatCC::Unordered, x, x, y, smaller)
    }

    /// `a cc b ? then : otherwise`, lane by lane for F64X2 values.
    fn choose(&mut self, cc: FloatCC, a: Value, b: Value, then: Value, otherwise: Value) -> Value {
        let cond = self.fb.ins().fcmp(cc, a, b);
        if self.fb.func.dfg.value_type(a) == types::F64 {
            self.fb.ins().select(cond, then, otherwise)
        } else {
            self.select_lanes(cond, then, otherwise)
        }
    }

    /// `cond ? x : y` lane by lane for a lane mask `cond` of F64X2 values.
    fn select_lanes(&mut self, cond: Value, x: Value, y: Value) -> Value {
        let ty = self.fb.func.dfg.value_type(x);
        let flags = MemFlagsData::new().with_endianness(Endianness::Little);
        let mask = self.fb.ins().bitcast(ty, flags, cond);
        self.fb.ins().bitselect(mask, x, y)
    }

    /// The constant `v` as a value of type `ty`: for F64X2, a load from the [`VectorPool`].
    fn constant(&mut self, v: f64, ty: types::Type) -> Value {
        if ty == types::F64X2
            && let Some(offset) = self.pool.offset(v)
        {
            // The pool's address is read where the constant is needed, from after the buffer
            // pointers: a value the loop defines keeps the (pure) load of the constant inside
            // the loop, next to its use, where it becomes an operand.
            let base = self.pool_base();
            let flags = MemFlagsData::trusted().with_readonly().with_can_move();
            return self.fb.ins().load(ty, flags, base, offset as i32);
        }
        let s = self.fb.ins().f64const(v);
        self.widen(s, ty)
    }

    /// The address of the constant pool, from after the buffer pointers.
    fn pool_base(&mut self) -> Value {
        let slot = (self.program.buffers.len() * 8) as i32;
        self.fb.ins().load(types::I64, MemFlagsData::trusted(), self.bufs, slot)
    }

    /// The address of `v` (twice) in the constant pool.
    fn pool_address(&mut self, v: f64) -> Result<Value, JitError> {
        let offset = self
            .pool
            .offset(v)
            .ok_or_else(|| JitError(format!("more than {POOL_CAPACITY} distinct vector constants")))?;
        let base = self.pool_base();
        Ok(self.fb.ins().iadd_imm_s(base, offset as i64))
    }

    /// `v` as a value of type `ty`: itself, or splatted into both lanes of an F64X2.
    fn widen(&mut self, v: Value, ty: types::Type) -> Value {
        if ty == types::F64 {
            v
        } else {
            self.fb.ins().splat(ty, v)
        }
    }

    /// Calls the scalar shim `f` on `args`: once for F64 arguments, once per lane for F64X2
    /// ones (lane results put back together).
    fn call_lanes(&mut self, f: FuncRef, args: &[Value]) -> Value {
        let ty = self.fb.func.dfg.value_type(args[0]);
        if ty == types::F64 {
            let call = self.fb.ins().call(f, args);
            return self.fb.inst_results(call)[0];
        }
        let mut out = None;
        for lane in 0..2u8 {
            let scalars: Vec<Value> = args.iter().map(|a| self.fb.ins().extractlane(*a, lane)).collect();
            let call = self.fb.ins().call(f, &scalars);
            let r = self.fb.inst_results(call)[0];
            out = Some(match out {
                None => self.fb.ins().splat(ty, r),
                Some(v) => self.fb.ins().insertlane(v, r, lane),
            });
        }
        out.expect("two lanes")
    }

    /// The value of expression `id` at one element (see [`Elem`]).
    fn expr(&mut self, id: Id, ctx: &Elem, memo: &mut HashMap<Id, Value>) -> Result<Value, JitError> {
        if let Some(v) = memo.get(&id) {
            return Ok(*v);
        }
        let (rows, i) = (ctx.rows, ctx.i);
        if let Some(buf) = ctx.stored.get(&id) {
            // An output an earlier loop of this statement stored.
            let v = self.load_typed(rows[buf], i, ctx.ty);
            memo.insert(id, v);
            return Ok(v);
        }
        if ctx.computing != Some(id)
            && let Some(slot) = ctx.slots.get(&id)
        {
            // A function result computed by an earlier loop of this statement.
            let p = self.fb.ins().iadd_imm_s(ctx.scratch_row, (*slot * 8) as i64);
            let v = self.load_typed(p, i, ctx.ty);
            memo.insert(id, v);
            return Ok(v);
        }
        let g = &self.program.graph;
        let v = match g.node(id).clone() {
            Node::Num(bits) => self.constant(f64::from_bits(bits), ctx.ty),
            Node::Leaf(Leaf::Buf(buf)) => self.load_typed(rows[&buf], i, ctx.ty),
            Node::Leaf(Leaf::Const(c)) => {
                let v = self
                    .fb
                    .ins()
                    .load(types::F64, MemFlagsData::trusted(), self.consts, (c * 8) as i32);
                self.widen(v, ctx.ty)
            }
            Node::Leaf(Leaf::Dt) => self.widen(self.dt, ctx.ty),
            Node::Leaf(Leaf::Time) => self.widen(self.time, ctx.ty),
            Node::Leaf(other) => return Err(JitError(format!("unbound symbol {other:?} in the step program"))),
            Node::Add(x, y) => {
                let (x, y) = (self.expr(x, ctx, memo)?, self.expr(y, ctx, memo)?);
                self.fb.ins().fadd(x, y)
            }
            Node::Mul(x, y) => {
                let (x, y) = (self.expr(x, ctx, memo)?, self.expr(y, ctx, memo)?);
                self.fb.ins().fmul(x, y)
            }
            Node::Div(x, y) => {
                let (x, y) = (self.expr(x, ctx, memo)?, self.expr(y, ctx, memo)?);
                self.fb.ins().fdiv(x, y)
            }
            Node::Neg(x) => {
                let x = self.expr(x, ctx, memo)?;
                self.fb.ins().fneg(x)
            }
            Node::Pow(x, y) => {
                let (x, y) = (self.expr(x, ctx, memo)?, self.expr(y, ctx, memo)?);
                let f = self.shim("gle_pow");
                self.call_lanes(f, &[x, y])
            }
            // Inlined two lanes at a time; a single element (an odd row's last) calls the shim,
            // which computes the same function (and keeps compile times down).
            Node::Call(Fun::B(Builtin::Tanh), args) if args.len() == 1 && ctx.ty == types::F64X2 => {
                let x = self.expr(args[0], ctx, memo)?;
                self.tanh(x)
            }
            Node::Call(f, args) if piecewise(f) => {
                let vals: Vec<Value> = args
                    .iter()
                    .map(|a| self.expr(*a, ctx, memo))
                    .collect::<Result<_, _>>()?;
                self.piecewise(f, &vals)?
            }
            Node::Call(f, args) => {
                let vals: Vec<Value> = args
                    .iter()
                    .map(|a| self.expr(*a, ctx, memo))
                    .collect::<Result<_, _>>()?;
                let name = shims::name(f, vals.len()).ok_or_else(|| JitError(format!("no shim for {}", f.name())))?;
                let fref = self.shim(name);
                self.call_lanes(fref, &vals)
            }
        };
        memo.insert(id, v);
        Ok(v)
    }
}

/// What [`Emitter::call_column_sums`] does with each sum.
#[derive(Clone, Copy)]
enum Finish {
    /// Stores it.
    Store,
    /// Stores `±sum / batch`.
    Mean { negate: bool },
    /// Updates the destination (a parameter) in place to `θ − rate·(±sum / batch)`: a plain-SGD
    /// step against the batch mean, `rate` a scalar value.
    SgdStep { negate: bool, rate: Value },
}

/// A call of the `gle_column_sums` product (see [`products`]): output `o` gets
/// `Σ_k src[k·src_stride + j]·scales[k·term_stride + o·output_stride]` for `k < terms` at
/// `dst[o·dst_stride + j]`, for `j < cols`.
struct ColumnSums {
    src: Value,
    src_stride: usize,
    scales: Value,
    term_stride: usize,
    output_stride: usize,
    dst: Value,
    dst_stride: usize,
    terms: usize,
    cols: Value,
}

/// Where an element of a `Map` is: the batch row's pointer of every buffer, the element
/// index, the batch row's scratch pointer, the scratch offset of every materialised call, the
/// outputs earlier loops stored, and the call this loop computes (`None` for a loop that
/// writes outputs).
struct Elem<'a> {
    rows: &'a HashMap<usize, Value>,
    i: Value,
    /// F64 for element `i`, F64X2 for elements `i` and `i + 1` in the two lanes.
    ty: types::Type,
    scratch_row: Value,
    slots: &'a HashMap<Id, usize>,
    /// The buffer of every output that an earlier loop of this statement stored.
    stored: &'a HashMap<Id, usize>,
    computing: Option<Id>,
}

/// The shortest rows whose `tanh` a map computes by one call of `gle_tanh_row`
/// ([`Emitter::row_tanhs`]): on shorter ones the call costs more than it saves (LagNet's rows of
/// a few neurons ran 6 % slower with it).
const ROW_TANH_MIN_LEN: usize = 8;

/// A loop of a `Map` statement: one that materialises a function call (see the `Map`
/// lowering), one that computes and stores some of its outputs, or one call per row of
/// `gle_tanh_row` on an output an earlier loop stored (buffer `arg`; [`Emitter::row_tanhs`]).
enum Phase {
    Call(Id),
    Outputs(Vec<(usize, Id)>),
    Tanh { tanh: Id, arg: usize },
}

/// Whether calls of `f` are inlined rather than calls to a shim.
fn inlined(f: Fun) -> bool {
    f == Fun::B(Builtin::Tanh) || piecewise(f)
}

/// Whether `f` is computed by comparisons and selections ([`Emitter::piecewise`]).
fn piecewise(f: Fun) -> bool {
    use Builtin::{Abs, Clamp, HardSigmoid, HardTanh, Max, Min, Relu, Step};
    matches!(f, Fun::Positive | Fun::Sign)
        || matches!(
            f,
            Fun::B(Abs | Clamp | HardSigmoid | HardTanh | Max | Min | Relu | Step)
        )
}

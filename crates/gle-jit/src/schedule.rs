//! The order in which a team of threads runs a step, and where its threads must meet.
//!
//! Each thread of a team runs its share of every statement. Row-local statements (elementwise
//! maps, `W·x`, `Wᵀ·e`, softmax) and the commits of batch buffers give every thread the same
//! batch rows, so between two of them a thread only reads rows it wrote itself: they need no
//! barrier. The gradient statements (`e·rᵀ`, means over the batch) read every row, so they must
//! wait for the rows of the other threads. A barrier goes only where two items of the same
//! barrier-free stretch touch a buffer in a way the rows do not keep apart; and the gradient
//! statements, which no later statement of a step reads, are moved together (where no buffer
//! access forbids it) so that a step needs a few barriers instead of one per statement. Every
//! item computes what it computes in program order, so results do not change.

use gle_derive::program::{Layout, Program, Stmt};
use std::collections::HashMap;

/// One piece of work of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A statement of the step program, by index.
    Stmt(usize),
    /// A commit, by index in `program.commits`.
    Commit(usize),
}

/// The buffers an item reads and writes, and whether it touches only the batch rows of the
/// thread that runs it.
pub(crate) struct Access {
    reads: Vec<usize>,
    writes: Vec<usize>,
    row_local: bool,
}

impl Access {
    /// `absorbed` maps the index of an `Outer` statement that updates a parameter in place
    /// (see `compile_absorbing`) to that parameter.
    pub(crate) fn of(program: &Program, item: Item, absorbed: &HashMap<usize, usize>) -> Self {
        let batch = |b: usize| program.buffers[b].layout == Layout::Batch;
        match item {
            Item::Commit(k) => {
                let (dst, src) = program.commits[k];
                Access {
                    reads: vec![src],
                    writes: vec![dst],
                    row_local: batch(dst) && batch(src),
                }
            }
            Item::Stmt(k) => {
                let stmt = &program.stmts[k];
                let (mut reads, mut writes) = program.reads_and_writes(stmt);
                if let Some(&param) = absorbed.get(&k) {
                    reads.push(param);
                    writes = vec![param];
                }
                let row_local = match stmt {
                    Stmt::Map { .. } | Stmt::MatVec { .. } | Stmt::MatTVec { .. } | Stmt::Softmax { .. } => {
                        writes.iter().all(|&b| batch(b))
                    }
                    Stmt::Outer { .. } | Stmt::Mean { .. } => false,
                };
                Access {
                    reads,
                    writes,
                    row_local,
                }
            }
        }
    }

    /// Whether `self` and `other`, in either order, touch a buffer that one of them writes.
    pub(crate) fn conflicts(&self, other: &Access, mut kept_apart: impl FnMut(usize) -> bool) -> bool {
        let hit = |a: &[usize], b: &[usize], kept_apart: &mut dyn FnMut(usize) -> bool| {
            a.iter().any(|x| b.contains(x) && !kept_apart(*x))
        };
        hit(&self.writes, &other.reads, &mut kept_apart)
            || hit(&self.reads, &other.writes, &mut kept_apart)
            || hit(&self.writes, &other.writes, &mut kept_apart)
    }
}

/// The items of a step in the order a team runs them, each with whether the threads meet
/// (wait for each other) before it. The threads always meet at the end of the step.
pub(crate) fn team_schedule(program: &Program, absorbed: &HashMap<usize, usize>) -> Vec<(Item, bool)> {
    let items: Vec<Item> = (0..program.stmts.len())
        .map(Item::Stmt)
        .chain((0..program.commits.len()).map(Item::Commit))
        .collect();
    let access: Vec<Access> = items.iter().map(|&i| Access::of(program, i, absorbed)).collect();
    // Item j must follow item i (i before j in program order) when they touch a buffer one of
    // them writes.
    let n = items.len();
    let mut preds = vec![0usize; n];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for j in 0..n {
        for i in 0..j {
            if access[i].conflicts(&access[j], |_| false) {
                preds[j] += 1;
                succs[i].push(j);
            }
        }
    }
    // Row-local items first, as long as any is ready; then the others that are ready; and so on.
    let mut order = Vec::with_capacity(n);
    let mut done = vec![false; n];
    let mut row_local = true;
    while order.len() < n {
        let pick = (0..n).find(|&k| !done[k] && preds[k] == 0 && access[k].row_local == row_local);
        let Some(k) = pick else {
            row_local = !row_local;
            continue;
        };
        done[k] = true;
        order.push(k);
        for &s in &succs[k] {
            preds[s] -= 1;
        }
    }
    // A barrier before an item that conflicts with one since the last barrier, unless both
    // are row-local and the buffer is a batch buffer (each thread then touches its own rows).
    let batch = |b: usize| program.buffers[b].layout == Layout::Batch;
    let mut stretch: Vec<usize> = Vec::new();
    order
        .into_iter()
        .map(|k| {
            let meet = stretch
                .iter()
                .any(|&s| access[s].conflicts(&access[k], |b| access[s].row_local && access[k].row_local && batch(b)));
            if meet {
                stretch.clear();
            }
            stretch.push(k);
            (items[k], meet)
        })
        .collect()
}

/// How a team shares the work of a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TeamSplit {
    /// Whole statements where the batch has fewer rows than the team has threads (splitting
    /// rows would leave threads idle), and where the threads' shares of whole statements are
    /// within [`MAX_WHOLE_EXCESS`] of even; rows otherwise.
    #[default]
    Auto,
    /// Every statement's rows (of the batch, or of a gradient) split between the threads, which
    /// meet where one's rows are read by another.
    Rows,
    /// Each thread runs whole statements, each layer's on one thread, and the threads meet once
    /// per step; rows where the program's statements do not fall into enough independent groups.
    Statements,
}

/// How much more than an even share of the work (by `stmt_work`'s estimate) the busiest thread
/// may get from whole statements for [`TeamSplit::Auto`] to choose them at batch sizes that
/// could split rows. Rows balance the work exactly, but every step each thread then reads the
/// rows, weights and gradients the others wrote; whole layers share only the rates and errors
/// where one thread's run of layers meets another's. MNIST-1D 15k on two threads (its busiest
/// thread ~1.12 even shares) ran faster with whole layers at batch 100 both where the two
/// cores share a cache (3,550 against 3,400 steps/s) and where they share none (3,170 against
/// 2,150; BENCHMARKS.md, 2026-12-05 second session); with shares much less even, rows would
/// win where the cores share a cache.
pub const MAX_WHOLE_EXCESS: f64 = 1.25;

/// For a team that runs whole statements ([`TeamSplit`]): the thread that runs each statement.
/// Statements that touch a buffer one of them writes (directly or through a chain of such
/// statements) go to the same thread, so the threads need not meet within the step; the
/// connected groups — with the parallel schedule, each layer's statements, which read only what
/// the step before committed — go to the threads in runs of consecutive groups
/// ([`contiguous_runs`]) balanced by an estimate of their work, the lightest share to the
/// calling thread. `None` when there are fewer groups than threads, when the program commits a
/// buffer by copying (those copies would have to wait for every reader), and where `split`
/// takes rows.
pub(crate) fn statement_owners(
    program: &Program,
    absorbed: &HashMap<usize, usize>,
    threads: usize,
    batch: usize,
    split: TeamSplit,
) -> Option<Vec<usize>> {
    if threads < 2 || split == TeamSplit::Rows || !program.commits.is_empty() {
        return None;
    }
    let n = program.stmts.len();
    let access: Vec<Access> = (0..n).map(|k| Access::of(program, Item::Stmt(k), absorbed)).collect();
    let mut group: Vec<usize> = (0..n).collect();
    fn root(group: &mut [usize], mut k: usize) -> usize {
        while group[k] != k {
            group[k] = group[group[k]];
            k = group[k];
        }
        k
    }
    for j in 0..n {
        for i in 0..j {
            if access[i].conflicts(&access[j], |_| false) {
                let (a, b) = (root(&mut group, i), root(&mut group, j));
                group[a.max(b)] = a.min(b);
            }
        }
    }
    let roots: Vec<usize> = (0..n).map(|k| root(&mut group, k)).collect();
    // The groups in program order (a group's root is its first statement), with their work.
    // (MNIST-1D's output layer comes first, its first statement being the softmax of the rates
    // the step before committed, and joins the first hidden layers' run. Ordered by their last
    // statements, the output came last, and moved to the other run to balance the work, the
    // first hidden layer: 3 % slower at batch 100 for the same estimated balance.)
    let groups: Vec<usize> = (0..n).filter(|&k| roots[k] == k).collect();
    if groups.len() < threads {
        return None;
    }
    let mut work_of_root = vec![0usize; n];
    for (k, stmt) in program.stmts.iter().enumerate() {
        work_of_root[roots[k]] += stmt_work(stmt);
    }
    let work: Vec<usize> = groups.iter().map(|&g| work_of_root[g]).collect();
    let runs = contiguous_runs(&work, threads);
    let mut load = vec![0usize; threads];
    let mut run_of_root = vec![0usize; n];
    for ((&g, &run), w) in groups.iter().zip(&runs).zip(&work) {
        load[run] += w;
        run_of_root[g] = run;
    }
    let busiest = load.iter().max().copied().unwrap_or(0) as f64;
    let even = work.iter().sum::<usize>() as f64 / threads as f64;
    if split == TeamSplit::Auto && batch >= threads && busiest > MAX_WHOLE_EXCESS * even {
        return None;
    }
    // The calling thread (0) takes the lightest share: it also does the work between steps.
    let mut by_load: Vec<usize> = (0..threads).collect();
    by_load.sort_by_key(|&t| (load[t], t));
    let mut label = vec![0usize; threads];
    for (k, &t) in by_load.iter().enumerate() {
        label[t] = k;
    }
    Some(roots.iter().map(|&r| label[run_of_root[r]]).collect())
}

/// Splits `work` (at least `runs` items) into `runs` non-empty runs of consecutive items whose
/// largest sum is as small as it can be; returns each item's run. Consecutive groups are
/// neighbouring layers, which exchange their rates and errors every step: one thread's layers
/// then meet another's only at the ends of its run, so few of those values cross between the
/// cores' caches (on a host whose cores share no cache, each crossing costs more than the work
/// on it).
fn contiguous_runs(work: &[usize], runs: usize) -> Vec<usize> {
    let n = work.len();
    let prefix: Vec<usize> = std::iter::once(0)
        .chain(work.iter().scan(0, |sum, &w| {
            *sum += w;
            Some(*sum)
        }))
        .collect();
    // best[r][i]: the smallest largest sum of the first `i` items in `r + 1` runs; start[r][i]:
    // where the last of those runs starts.
    let mut best = vec![vec![usize::MAX; n + 1]; runs];
    let mut start = vec![vec![0usize; n + 1]; runs];
    best[0].copy_from_slice(&prefix);
    for r in 1..runs {
        for i in r + 1..=n {
            for j in r..i {
                let largest = best[r - 1][j].max(prefix[i] - prefix[j]);
                if largest < best[r][i] {
                    (best[r][i], start[r][i]) = (largest, j);
                }
            }
        }
    }
    let mut run_of = vec![0usize; n];
    let mut end = n;
    for r in (0..runs).rev() {
        let begin = if r == 0 { 0 } else { start[r][end] };
        run_of[begin..end].iter_mut().for_each(|x| *x = r);
        end = begin;
    }
    run_of
}

/// A rough count of the element operations of a statement at batch 1.
fn stmt_work(stmt: &Stmt) -> usize {
    match *stmt {
        Stmt::Map { len, ref outs } => len * outs.len() * 4,
        Stmt::MatVec { rows, cols, .. } | Stmt::MatTVec { rows, cols, .. } | Stmt::Outer { rows, cols, .. } => {
            rows * cols
        }
        Stmt::Softmax { len, .. } => len * 8,
        Stmt::Mean { len, .. } => len,
    }
}

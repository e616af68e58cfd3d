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

/// For a team whose batch has fewer rows than it has threads (batch 1), where splitting rows
/// would leave threads idle: the thread that runs each statement whole. Statements that touch a
/// buffer one of them writes (directly or through a chain of such statements) go to the same
/// thread, so the threads need not meet within the step; the connected groups — with the
/// parallel schedule, each layer's statements, which read only what the step before committed
/// — go to the least-loaded thread, largest first, by an estimate of their work, the lightest
/// share to the calling thread. `None` when there are fewer groups than threads, or the program
/// commits a buffer by copying (those copies would have to wait for every reader).
pub(crate) fn statement_owners(
    program: &Program,
    absorbed: &HashMap<usize, usize>,
    threads: usize,
) -> Option<Vec<usize>> {
    if !program.commits.is_empty() {
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
    let mut work: HashMap<usize, usize> = HashMap::new();
    for (k, stmt) in program.stmts.iter().enumerate() {
        *work.entry(roots[k]).or_default() += stmt_work(stmt);
    }
    if work.len() < threads {
        return None;
    }
    let mut groups: Vec<(usize, usize)> = work.into_iter().collect();
    groups.sort_by_key(|&(root, w)| (std::cmp::Reverse(w), root));
    let mut load = vec![0usize; threads];
    let mut owner_of: HashMap<usize, usize> = HashMap::new();
    for (root, w) in groups {
        let t = (0..threads).min_by_key(|&t| (load[t], t)).unwrap_or(0);
        load[t] += w;
        owner_of.insert(root, t);
    }
    // The calling thread (0) takes the lightest share: it also does the work between steps.
    let mut by_load: Vec<usize> = (0..threads).collect();
    by_load.sort_by_key(|&t| (load[t], t));
    let mut label = vec![0usize; threads];
    for (k, &t) in by_load.iter().enumerate() {
        label[t] = k;
    }
    Some(roots.iter().map(|r| label[owner_of[r]]).collect())
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

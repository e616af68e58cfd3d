//! The optimiser's step applied by a team in the same call as the next step
//! ([`gle_runtime::StepKernel::run_after_update`]).
//!
//! Every learnable's elements are cut into pieces; each thread first updates the pieces of the
//! parameters its own statements touch (with whole statements per thread, each layer's stay on
//! the thread whose step reads them; otherwise each thread takes its part of every parameter),
//! then takes what is left of the other threads' pieces, from the far end of their ranges (so
//! that from one step to the next mostly the same pieces change threads, and their moments stay
//! in the cache of the thread that updates them). A piece is updated by whichever thread claims
//! it, with the operations of `gle_runtime::optim`, so the values do not depend on who does it.
//! The threads then meet, and take the step only if no parameter came out NaN or infinite, as a
//! step after a failed optimiser step is never taken.

use gle_derive::program::Program;
use gle_runtime::optim::{ParamUpdate, StepUpdate};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The most elements of one piece: its parameter, gradient and moments (32 KB) stay in the
/// first-level cache, and a thread left idle finds work in pieces of about half a microsecond.
const PIECE_ELEMENTS: usize = 512;

/// A range of one learnable's elements, updated by one thread at a time.
#[derive(Clone, Copy, Debug)]
struct Piece {
    learnable: usize,
    start: usize,
    end: usize,
}

/// The pieces of a team's optimiser step: each thread's own pieces in a contiguous range.
#[derive(Default)]
pub(crate) struct Pieces {
    pieces: Vec<Piece>,
    /// Per thread, its range of `pieces`.
    ranges: Vec<(usize, usize)>,
}

impl Pieces {
    /// The pieces of every learnable of `program` but the `absorbed` ones (their updates are
    /// the step's), by thread: with `owners` (the thread of each statement), a learnable's go
    /// to the thread of the statements that write its gradient; otherwise each learnable's
    /// elements are split between the threads as the optimiser splits them.
    pub(crate) fn new(
        program: &Program,
        lens: &[usize],
        absorbed: &[usize],
        owners: Option<&[usize]>,
        threads: usize,
    ) -> Self {
        let mut by_thread: Vec<Vec<Piece>> = vec![Vec::new(); threads];
        for (k, l) in program.learnables.iter().enumerate() {
            if absorbed.contains(&k) {
                continue;
            }
            let n = lens[l.param];
            let mut cut = |t: usize, start: usize, end: usize| {
                let mut at = start;
                while at < end {
                    let next = (at + PIECE_ELEMENTS).min(end);
                    by_thread[t].push(Piece {
                        learnable: k,
                        start: at,
                        end: next,
                    });
                    at = next;
                }
            };
            match owners {
                Some(owners) => {
                    let writer = program
                        .stmts
                        .iter()
                        .position(|s| program.reads_and_writes(s).1.contains(&l.grad));
                    cut(writer.map_or(0, |s| owners[s]), 0, n);
                }
                None => (0..threads).for_each(|t| cut(t, n * t / threads, n * (t + 1) / threads)),
            }
        }
        let mut pieces = Vec::new();
        let mut ranges = Vec::with_capacity(threads);
        for own in by_thread {
            let start = pieces.len();
            pieces.extend(own);
            ranges.push((start, pieces.len()));
        }
        Pieces { pieces, ranges }
    }

    /// Whether `update` and `data` have the buffers and lengths the pieces need: every piece's
    /// learnable exists, with distinct parameter and gradient buffers and moments at least as
    /// long as the piece's end (and the pieces can be counted in 32 bits).
    pub(crate) fn fit(&self, update: &StepUpdate, data: &[Vec<f64>]) -> bool {
        let n = update.learnables.len();
        if update.updates.len() != n
            || update.m.len() != n
            || update.s.len() != n
            || u32::try_from(self.pieces.len()).is_err()
        {
            return false;
        }
        self.pieces.iter().all(|p| {
            let Some(l) = update.learnables.get(p.learnable) else {
                return false;
            };
            l.param != l.grad
                && [data.get(l.param), data.get(l.grad)]
                    .iter()
                    .all(|b| b.is_some_and(|b| b.len() >= p.end))
                && update.m[p.learnable].len() >= p.end
                && update.s[p.learnable].len() >= p.end
        })
    }
}

/// The unclaimed part `front..back` of one thread's pieces, on a cache line of its own so that
/// the threads' claims of their own pieces do not contend. The owner claims from the front,
/// the other threads from the back.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Makes `start..end` unclaimed.
    fn reset(&self, start: usize, end: usize) {
        self.0.store(pack(start, end), Ordering::Relaxed);
    }

    /// Claims the first unclaimed piece (`owner`) or the last, if any is left.
    fn claim(&self, owner: bool) -> Option<usize> {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (front, back) = unpack(current);
            if front >= back {
                return None;
            }
            let (claimed, next) = if owner {
                (front, pack(front + 1, back))
            } else {
                (back - 1, pack(front, back - 1))
            };
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(claimed),
                Err(seen) => current = seen,
            }
        }
    }
}

/// `front..back` in one word (piece indices fit in 32 bits: [`Pieces::fit`] checks).
fn pack(front: usize, back: usize) -> u64 {
    ((front as u64) << 32) | back as u64
}

/// The range [`pack`] packed.
fn unpack(word: u64) -> (usize, usize) {
    ((word >> 32) as usize, (word & u64::from(u32::MAX)) as usize)
}

/// Storage of a [`TeamUpdate`], reused from one step to the next.
#[derive(Default)]
pub(crate) struct Storage {
    /// Per learnable, its update (`None`: the step applies it).
    updates: Vec<Option<ParamUpdate>>,
    /// Per learnable, the addresses of its parameter, gradient and moments.
    bases: Vec<[usize; 4]>,
}

/// One optimiser step shared by a team: built by the calling thread before the threads apply
/// it, read by every thread until they meet after it.
pub(crate) struct TeamUpdate<'a> {
    storage: Storage,
    pieces: &'a Pieces,
    /// Per thread, the next of its pieces to be claimed (by it or another thread).
    next: &'a [Counter],
    /// The first parameter value found NaN or infinite, as `(learnable, element)`.
    bad: Mutex<Option<(usize, usize)>>,
    /// Set when there is one: the team's flag, which outlives the update.
    failed: &'a AtomicBool,
}

impl<'a> TeamUpdate<'a> {
    /// The step `update` on the buffers of `data`, kept in `storage`; the counters `next` and
    /// the flag `failed` are reset. `pieces` must [fit](Pieces::fit) `update` and `data`.
    pub(crate) fn new(
        update: StepUpdate<'_>,
        data: &mut [Vec<f64>],
        pieces: &'a Pieces,
        mut storage: Storage,
        next: &'a [Counter],
        failed: &'a AtomicBool,
    ) -> Self {
        storage.updates.clear();
        storage.updates.extend_from_slice(update.updates);
        storage.bases.clear();
        for (k, l) in update.learnables.iter().enumerate() {
            storage.bases.push([
                data[l.param].as_mut_ptr() as usize,
                data[l.grad].as_ptr() as usize,
                update.m[k].as_mut_ptr() as usize,
                update.s[k].as_mut_ptr() as usize,
            ]);
        }
        for (counter, &(start, end)) in next.iter().zip(&pieces.ranges) {
            counter.reset(start, end);
        }
        failed.store(false, Ordering::Relaxed);
        TeamUpdate {
            storage,
            pieces,
            next,
            bad: Mutex::new(None),
            failed,
        }
    }

    /// Thread `t`'s share: its own pieces, then those the other threads have not claimed yet.
    pub(crate) fn apply(&self, t: usize) {
        let threads = self.pieces.ranges.len();
        for owner in (0..threads).map(|i| (t + i) % threads) {
            while let Some(p) = self.next[owner].claim(owner == t) {
                let Piece { learnable, start, end } = self.pieces.pieces[p];
                let Some(update) = &self.storage.updates[learnable] else {
                    continue;
                };
                let [theta, grad, m, s] = self.storage.bases[learnable].map(|a| a as *mut f64);
                let len = end - start;
                // SAFETY: `Pieces::fit` checked that the parameter, its (distinct) gradient and
                // its moments hold at least `end` values; each piece is claimed by one thread
                // (the counter hands out each index once) and the pieces of a learnable are
                // disjoint, so no two threads touch the same element; nothing else touches these
                // buffers until the threads meet after the update (the step runs after that, and
                // the calling thread holds `data` and the moments mutably throughout).
                #[allow(unsafe_code)]
                let (theta, grad, m, s) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(theta.add(start), len),
                        std::slice::from_raw_parts(grad.cast_const().add(start), len),
                        std::slice::from_raw_parts_mut(m.add(start), len),
                        std::slice::from_raw_parts_mut(s.add(start), len),
                    )
                };
                if let Some(i) = update.apply(theta, grad, m, s) {
                    let mut first = self.bad.lock().unwrap_or_else(|e| e.into_inner());
                    let at = (learnable, start + i);
                    *first = Some(first.map_or(at, |f| f.min(at)));
                    self.failed.store(true, Ordering::Release);
                }
            }
        }
    }

    /// The first parameter value found NaN or infinite, and the storage back.
    pub(crate) fn finish(self) -> (Option<(usize, usize)>, Storage) {
        (self.bad.into_inner().unwrap_or_else(|e| e.into_inner()), self.storage)
    }
}

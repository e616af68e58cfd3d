//! The optimiser's step applied by a team: in the same call as the next step
//! ([`gle_runtime::StepKernel::run_after_update`], and between the steps of a run), or alone
//! ([`gle_runtime::StepKernel::apply_update`]).
//!
//! Every learnable's elements are cut into pieces. With whole statements per thread, each
//! learnable is one piece, updated by the thread whose statements write its gradient (and read
//! the parameter), and that is all a thread updates. Otherwise each thread takes its part of
//! every parameter, then what is left of the other threads' pieces. A piece is updated with the
//! operations of `gle_runtime::optim`, so the values do not depend on who does it. The threads
//! then meet, and take the step only if no parameter came out NaN or infinite, as a step after
//! a failed optimiser step is never taken.

use gle_derive::program::Program;
use gle_runtime::optim::{ParamUpdate, StepUpdate};
use std::cell::UnsafeCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The most elements of one piece where the threads steal pieces: its parameter, gradient and
/// moments (32 KB) stay in the first-level cache, and a thread left idle finds work in pieces of
/// about half a microsecond. (Where they do not, each learnable is one piece: fewer calls.)
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
    /// Whether a thread done with its own pieces takes those the others have not claimed yet:
    /// where each thread takes its part of every parameter. Where each layer's parameters stay
    /// on the thread whose statements read them, no piece changes threads (on a host whose
    /// cores share no cache, a stolen piece's parameter, gradient and moments would cross
    /// twice per step, longer than updating them).
    steal: bool,
    /// The learnables the step updates itself, which have no pieces.
    absorbed: Vec<usize>,
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
            let most = if owners.is_some() { n } else { PIECE_ELEMENTS };
            let mut cut = |t: usize, start: usize, end: usize| {
                let mut at = start;
                while at < end {
                    let next = (at + most).min(end);
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
        Pieces {
            pieces,
            ranges,
            steal: owners.is_none(),
            absorbed: absorbed.to_vec(),
        }
    }

    /// Whether `update` and `data` have the buffers and lengths the pieces need: every piece's
    /// learnable exists, with distinct parameter and gradient buffers and moments at least as
    /// long as the piece's end; and whether the pieces cover the update (it updates no
    /// learnable the step updates itself).
    pub(crate) fn fit(&self, update: &StepUpdate, data: &[Vec<f64>]) -> bool {
        let n = update.learnables.len();
        if update.updates.len() != n
            || update.m.len() != n
            || update.s.len() != n
            || self
                .absorbed
                .iter()
                .any(|&k| update.updates.get(k).is_some_and(Option::is_some))
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

/// A counter on a cache line of its own, so that the threads' claims of their own pieces do not
/// contend.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct Counter(AtomicUsize);

/// One optimiser step posted to a team.
#[derive(Default)]
struct Posted {
    /// Per learnable, its update (`None`: the step applies it).
    updates: Vec<Option<ParamUpdate>>,
    /// Per learnable, the addresses of its parameter, gradient and moments.
    bases: Vec<[usize; 4]>,
}

/// Storage of a [`TeamUpdate`], reused from one run to the next: two slots, so that the
/// calling thread can post the next step's update while the threads still apply this one.
#[derive(Default)]
pub(crate) struct Storage([Posted; 2]);

/// Sets `slot` to `value` only where they differ: on a host whose cores share no cache, every
/// store to a line another thread reads sends the line across, even when the value stays.
fn post<T: PartialEq>(slot: &mut T, value: T) {
    if *slot != value {
        *slot = value;
    }
}

/// The optimiser's steps shared by a team: the calling thread [posts](Self::post) each step's
/// update in one of two slots, then every thread [applies](Self::apply) its share of it and
/// they meet. Kept for a whole run of steps, so that what stays the same from one step to the
/// next (the buffers' addresses, and Adam's rates once its bias corrections have rounded to 1)
/// stays in every core's cache.
pub(crate) struct TeamUpdate<'a> {
    /// Each slot written by the calling thread only in [`Self::post`], read by every thread
    /// only in [`Self::apply`]; the team's meetings keep the two apart.
    slots: [UnsafeCell<Posted>; 2],
    pieces: &'a Pieces,
    /// Per thread, the next of its pieces to be claimed (by it or another thread).
    next: &'a [Counter],
    /// The first parameter value found NaN or infinite, as `(learnable, element)`.
    bad: Mutex<Option<(usize, usize)>>,
    /// Set when there is one: the team's flag, which outlives the update.
    failed: &'a AtomicBool,
}

// SAFETY: a slot is written only by the calling thread in `post`, which its caller makes sure no
// thread's `apply` of that slot overlaps; everything else is shared through atomics or a mutex.
#[allow(unsafe_code)]
unsafe impl Sync for TeamUpdate<'_> {}

impl<'a> TeamUpdate<'a> {
    /// An update with nothing posted yet, kept in `storage`; its claims are
    /// [reset](Self::reset_claims) and the flag `failed` is cleared.
    pub(crate) fn new(pieces: &'a Pieces, storage: Storage, next: &'a [Counter], failed: &'a AtomicBool) -> Self {
        if failed.load(Ordering::Relaxed) {
            failed.store(false, Ordering::Relaxed);
        }
        let update = TeamUpdate {
            slots: storage.0.map(UnsafeCell::new),
            pieces,
            next,
            bad: Mutex::new(None),
            failed,
        };
        update.reset_claims();
        update
    }

    /// Makes every piece unclaimed again, for the next update: after the threads have met
    /// after applying the last one, and before they apply the next.
    pub(crate) fn reset_claims(&self) {
        if self.pieces.steal {
            for (counter, &(start, _)) in self.next.iter().zip(&self.pieces.ranges) {
                counter.0.store(start, Ordering::Relaxed);
            }
        }
    }

    /// Posts the step `update` on the buffers of `data`, which `pieces` must
    /// [fit](Pieces::fit), in slot `slot` (0 or 1) for the threads to [apply](Self::apply).
    ///
    /// # Safety
    /// No thread may be in [`Self::apply`] of that slot meanwhile.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn post(&self, slot: usize, update: StepUpdate<'_>, data: &mut [Vec<f64>]) {
        // SAFETY: the caller makes sure no thread reads the slot meanwhile.
        let storage = unsafe { &mut *self.slots[slot].get() };
        let n = update.learnables.len();
        storage.updates.resize(n, None);
        storage.bases.resize(n, [0; 4]);
        for (entry, &value) in storage.updates.iter_mut().zip(update.updates) {
            post(entry, value);
        }
        for (k, l) in update.learnables.iter().enumerate() {
            let bases = [
                data[l.param].as_mut_ptr() as usize,
                data[l.grad].as_ptr() as usize,
                update.m[k].as_mut_ptr() as usize,
                update.s[k].as_mut_ptr() as usize,
            ];
            post(&mut storage.bases[k], bases);
        }
    }

    /// Thread `t`'s share of the update posted in slot `slot`: its own pieces, then (where the
    /// pieces are stolen) those the other threads have not claimed yet.
    #[allow(unsafe_code)]
    pub(crate) fn apply(&self, t: usize, slot: usize) {
        // SAFETY: `post` does not write this slot while any thread is here.
        let storage = unsafe { &*self.slots[slot].get() };
        if !self.pieces.steal {
            let (start, end) = self.pieces.ranges[t];
            (start..end).for_each(|p| self.update_piece(storage, p));
            return;
        }
        let threads = self.pieces.ranges.len();
        for owner in (0..threads).map(|i| (t + i) % threads) {
            let end = self.pieces.ranges[owner].1;
            loop {
                let p = self.next[owner].0.fetch_add(1, Ordering::Relaxed);
                if p >= end {
                    break;
                }
                self.update_piece(storage, p);
            }
        }
    }

    /// Updates piece `p`, which no other thread updates in this step.
    #[allow(unsafe_code)]
    fn update_piece(&self, storage: &Posted, p: usize) {
        let Piece { learnable, start, end } = self.pieces.pieces[p];
        let Some(update) = &storage.updates[learnable] else {
            return;
        };
        let [theta, grad, m, s] = storage.bases[learnable].map(|a| a as *mut f64);
        let len = end - start;
        // SAFETY: `Pieces::fit` checked that the parameter, its (distinct) gradient and its
        // moments hold at least `end` values; each piece is updated by one thread (its owner,
        // or whichever thread's claim the counter handed it) and the pieces of a learnable are
        // disjoint, so no two threads touch the same element; nothing else touches these buffers
        // until the threads meet after the update (the step runs after that, and the calling
        // thread holds `data` and the moments mutably throughout).
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

    /// The first parameter value the update applied last left NaN or infinite (read after the
    /// threads met after applying it), and no record of it any more.
    pub(crate) fn take_bad(&self) -> Option<(usize, usize)> {
        self.bad.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The storage back, for the next update.
    pub(crate) fn finish(self) -> Storage {
        Storage(self.slots.map(UnsafeCell::into_inner))
    }
}

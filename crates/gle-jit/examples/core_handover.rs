//! How fast two threads hand data to each other on this machine: what a team's barriers and the
//! rows one thread reads after another wrote them cost. Prints the round trip of one cache line
//! between two threads and the rate at which 1 MB written by one is read by the other.
//!
//! `cargo run --release -p gle-jit --example core_handover`
//!
//! On the shared 2-vCPU benchmark host (BENCHMARKS.md) the two vCPUs sometimes share a cache
//! (a round trip of ~60 ns, ~20 GB/s) and sometimes not (~400 ns, ~4 GB/s): the host's fast and
//! slow states for teams of threads. Run it before and after a comparison of team timings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Round trips timed, in batches: the fastest batch counts (the threads are not pinned to
/// cores, and the system may run something else meanwhile).
const ROUND_TRIPS: u64 = 10_000;
/// Batches of round trips (the first warms up).
const BATCHES: u64 = 10;
/// Handovers of the buffer timed.
const HANDOVERS: u64 = 200;
/// The buffer handed over, in 8-byte words (1 MB).
const WORDS: usize = 1 << 17;

/// An atomic on a cache line of its own.
#[repr(align(64))]
struct Line(AtomicU64);

fn main() {
    let ball = Line(AtomicU64::new(0));
    let buffer: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
    let turn = Line(AtomicU64::new(0));
    // Plain spinning (no pause instruction): the hardware's latency, not the pause's.
    let wait_for = |line: &Line, value: u64| while line.0.load(Ordering::Acquire) != value {};
    let (round_trip, handover) = std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..ROUND_TRIPS * BATCHES {
                wait_for(&ball, 2 * i + 1);
                ball.0.store(2 * i + 2, Ordering::Release);
            }
            for h in 0..HANDOVERS {
                wait_for(&turn, 2 * h);
                buffer.iter().for_each(|w| w.store(h, Ordering::Relaxed));
                turn.0.store(2 * h + 1, Ordering::Release);
            }
        });
        let mut round_trip = f64::INFINITY;
        for batch in 0..BATCHES {
            let start = Instant::now();
            for i in batch * ROUND_TRIPS..(batch + 1) * ROUND_TRIPS {
                ball.0.store(2 * i + 1, Ordering::Release);
                wait_for(&ball, 2 * i + 2);
            }
            if batch > 0 {
                round_trip = round_trip.min(start.elapsed().as_secs_f64() / ROUND_TRIPS as f64);
            }
        }
        let start = Instant::now();
        let mut sum = 0u64;
        for h in 0..HANDOVERS {
            wait_for(&turn, 2 * h + 1);
            sum = buffer
                .iter()
                .fold(sum, |s, w| s.wrapping_add(w.load(Ordering::Relaxed)));
            turn.0.store(2 * h + 2, Ordering::Release);
        }
        let elapsed = start.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        // Each handover moves the buffer to the reader and back to the writer.
        (round_trip, 2.0 * (8 * WORDS) as f64 * HANDOVERS as f64 / elapsed)
    });
    let verdict = if handover > 10e9 {
        "the two threads' cores share a cache"
    } else {
        "the two threads' cores share no cache"
    };
    println!(
        "round trip {:.0} ns, handover {:.1} GB/s: {verdict}",
        round_trip * 1e9,
        handover / 1e9
    );
}

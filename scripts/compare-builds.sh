#!/usr/bin/env bash
# Compares the speed of two glec binaries on a shared, noisy host (BENCHMARKS.md): runs
# `BIN_A run ARGS…` and `BIN_B run ARGS…` alternately, the order flipping every round, and
# prints each round's steps/s, how many rounds B won (with a two-sided sign test's p) and both
# medians. Build the binaries first (e.g. `git stash; cargo build --release -p glec;
# cp target/release/glec /tmp/glec-a; …`). With PROBE set to a command (e.g.
# PROBE=target/release/examples/core_handover, from `cargo build --release -p gle-jit
# --example core_handover`), each round's line ends with what it printed before each of the
# round's two runs (its first line, or only its round trip where it names one): for teams of
# threads, whether the host's cores shared a cache then — the host can change between two runs.
# Usage: [PROBE=CMD] scripts/compare-builds.sh ROUNDS BIN_A BIN_B MODEL [glec run options…]
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 ROUNDS BIN_A BIN_B MODEL [glec run options…]" >&2
    exit 2
fi
rounds=$1 a=$2 b=$3
shift 3
rate() {
    "$1" run "${@:2}" | grep -o '[0-9]* steps/s' | cut -d' ' -f1 ||
        { echo "$0: \`$1 run ${*:2}\` printed no steps/s" >&2; exit 1; }
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
wins=0 all_a="" all_b=""
# What the probe says before a run (nothing without one).
probe() {
    if [ -n "${PROBE:-}" ]; then
        out=$($PROBE | head -n 1)
        echo "$out" | grep -o 'round trip [0-9]* ns' || echo "$out"
    fi
}
for round in $(seq "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then
        sa=$(probe); ra=$(rate "$a" "$@"); sb=$(probe); rb=$(rate "$b" "$@")
    else
        sb=$(probe); rb=$(rate "$b" "$@"); sa=$(probe); ra=$(rate "$a" "$@")
    fi
    state=""
    if [ -n "${PROBE:-}" ]; then state="  [A: $sa; B: $sb]"; fi
    echo "round $round: A $ra  B $rb steps/s$state"
    all_a="$all_a $ra" all_b="$all_b $rb"
    [ "$rb" -gt "$ra" ] && wins=$((wins + 1))
done
# Two-sided sign test: the chance of a split at least this uneven if neither build were faster.
p=$(awk -v n="$rounds" -v k="$wins" 'BEGIN {
    if (k < n - k) k = n - k
    c = 1; tail = 0
    for (i = 0; i <= n; i++) { if (i >= k) tail += c; c = c * (n - i) / (i + 1) }
    p = 2 * tail / 2 ^ n; if (p > 1) p = 1; printf "%.2f", p }')
echo "B faster in $wins of $rounds rounds (sign test p = $p); medians A $(echo "$all_a" | median), B $(echo "$all_b" | median) steps/s"

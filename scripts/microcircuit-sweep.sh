#!/usr/bin/env bash
# Bars task accuracy of the LE and the original dendritic microcircuit against the presentation
# time T (LE paper Fig. 3; EXPERIMENTS.md). Usage: scripts/microcircuit-sweep.sh [T_STEPS…]
# (presentation times in steps of dt = 0.1 ms; default 3 5 10 20 50 100 200 500 1000 2000
# 5000, i.e. T = 0.3 … 500 ms; the longest take minutes each). Prints, per model and T, the
# mean test accuracy over the last 10 of the 1000 epochs (evaluation without target nudging
# and without learning).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p glec
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(3 5 10 20 50 100 200 500 1000 2000 5000)
echo "| T (ms) | LE microcircuit | original microcircuit |"
echo "| --- | --- | --- |"
for n in "${steps[@]}"; do
    row="| $(awk "BEGIN { print $n / 10 }")"
    for model in le_microcircuit_bars le_microcircuit_bars_original; do
        acc=$(./target/release/glec run "models/$model.gle" --set "t_steps=$n" |
            awk '/^test/ { a[++k] = $5 } END { s = 0; for (i = k - 9; i <= k; i++) s += a[i]; printf "%.1f %%", s / 10 }')
        row="$row | $acc"
    done
    echo "$row |"
done

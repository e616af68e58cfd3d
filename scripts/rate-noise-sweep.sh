#!/usr/bin/env bash
# Rate noise with synaptic filtering on the MNIST-1D LE MLP (LE paper Fig. 4c; EXPERIMENTS.md):
# test accuracy after 10 epochs against the presentation time (n_updates steps of dt = 0.05 ms)
# for synaptic time constants τ_s, with rate noise σ = 0.2 and, as a reference, without noise
# and filters. Usage: scripts/rate-noise-sweep.sh [N_UPDATES…] (default 20 50 100 200; 10
# epochs take 500·n_updates steps, about 100 s at n_updates = 100 on one core).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p glec
ns=("$@")
[ ${#ns[@]} -gt 0 ] || ns=(20 50 100 200)
model=models/le_mnist1d_mlp_rate_noise.gle
accuracy() {
    ./target/release/glec run "$model" --steps $((500 * $1)) "${@:2}" |
        awk '/^test/ { a = $7 } END { printf "%.1f %%", a }'
}
echo "| n_updates (T) | σ = 0, no filter | σ = 0.2, τ_s = 0 | σ = 0.2, τ_s = 0.5 ms | σ = 0.2, τ_s = 2 ms |"
echo "| --- | --- | --- | --- | --- |"
for n in "${ns[@]}"; do
    row="| $n ($(awk "BEGIN { print $n * 0.05 }") ms)"
    row="$row | $(accuracy "$n" --set n_updates="$n" --set sigma_rate=0 --set tau_s=0)"
    for ts in 0 0.5 2; do
        row="$row | $(accuracy "$n" --set n_updates="$n" --set tau_s="$ts")"
    done
    echo "$row |"
done

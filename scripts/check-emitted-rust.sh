#!/usr/bin/env bash
# Compiles the emitted Rust of every bundled model (`glec emit rust`) as plain source of a scratch
# crate under the workspace's lints and `cargo clippy -D warnings`. The model! tests compile the
# same code as a macro expansion, where clippy skips most lints; this checks it as users read it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
crate=target/emitted-rust
rm -rf "$crate"
mkdir -p "$crate/src"
cargo build -q -p glec
lints=$(sed -n '/^\[workspace.lints.rust\]/,/^\[profile/p' Cargo.toml | sed '/^\[profile/d; /^#/d' | sed 's/^\[workspace\.lints\./[lints./')
cat > "$crate/Cargo.toml" <<TOML
[package]
name = "emitted-rust"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
gle-runtime = { path = "$root/crates/gle-runtime" }

$lints
TOML
echo '//! The emitted Rust of every bundled model.' > "$crate/src/lib.rs"
ln -s "$root/models" "$crate/models"
for model in models/*.gle; do
    name=$(basename "$model" .gle)
    target/debug/glec emit rust "$model" > "$crate/src/$name.rs"
    echo "include!(\"$name.rs\");" >> "$crate/src/lib.rs"
done
CARGO_TARGET_DIR="$root/target" cargo clippy -q --manifest-path "$crate/Cargo.toml" -- -D warnings
echo "emitted Rust of $(ls models/*.gle | wc -l) models: clippy-clean"

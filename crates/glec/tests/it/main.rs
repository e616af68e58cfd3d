//! End-to-end tests of the `glec` binary: exit codes, summaries, diagnostics, runs.

mod backprop;
mod check;
mod experiments;
mod plot;
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the `glec` binary in the workspace root.
pub fn glec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glec"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("glec runs")
}

/// The `.gle` files of a directory, sorted.
pub fn gle_files(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gle"))
        .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    v.sort();
    v
}

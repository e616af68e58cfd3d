//! `glec run` and `glec explain` on every bundled model, and how runs fail.

use crate::{gle_files, glec, root};

/// Every bundled model runs (a few steps each: the tests use the debug build) and explains.
#[test]
fn every_bundled_model_runs_and_explains() {
    for m in gle_files("models") {
        let out = glec(&["run", &m, "--steps", "30"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{m}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("ran 30 steps of"), "{m}: {stdout}");
        let out = glec(&["explain", &m]);
        assert!(out.status.success(), "{m}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("population"));
    }
}

pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("glec-run-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Recorded variables are written as .npy arrays of shape (samples, batch, neurons).
#[test]
fn records_are_written_as_npy() {
    let dir = temp_dir("records");
    let out = glec(&[
        "run",
        "models/gle_lagline.gle",
        "--steps",
        "250",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = gle_runtime::npy::read(&dir.join("y.r.npy")).unwrap();
    assert_eq!(a.shape, [3, 100, 1], "every 100 steps of 250: steps 0, 100, 200");
    let w = gle_runtime::npy::read(&dir.join("weights.npy")).unwrap();
    assert_eq!(w.shape, [1, 4]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--set` replaces a constant before checking, so values derived from it follow; unknown
/// names and malformed values are usage errors.
#[test]
fn set_overrides_constants_and_run_settings() {
    let out = glec(&[
        "run",
        "models/le_chain.gle",
        "--steps",
        "5",
        "--set",
        "dt=0.02",
        "--set",
        "batch=3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(batch 3)"));
    let out = glec(&["run", "models/gle_lagline.gle", "--steps", "5", "--set", "betta=0.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no constant or run setting named `betta`"));
    let out = glec(&["run", "models/gle_lagline.gle", "--set", "beta"]);
    assert_eq!(out.status.code(), Some(2));
    // dt above a time constant is caught by the checker, at the parameter's span.
    let out = glec(&["run", "models/le_chain.gle", "--set", "dt=20"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[E0503]"));
    // Run settings out of their range are usage errors, not silently ignored.
    for (set, says) in [
        ("batch=1.5", "`batch` must be a whole number"),
        ("batch=0", "`batch` must be a whole number"),
        ("batch=-3", "`batch` must be a whole number"),
        ("dt=0", "`dt` must be positive"),
        ("seed=-1", "`seed` must be a whole number"),
        ("seed=2.5", "`seed` must be a whole number"),
    ] {
        let out = glec(&["run", "models/le_chain.gle", "--steps", "5", "--set", set]);
        assert_eq!(out.status.code(), Some(2), "{set}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("`--set {set}`: ")) && stderr.contains(says),
            "{set}: {stderr}"
        );
    }
    // Seeds above 2⁵³ would be rounded to another seed on their way into the model.
    let out = glec(&[
        "run",
        "models/le_chain.gle",
        "--steps",
        "5",
        "--seed",
        "9007199254740993",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`seed` must be a whole number"));
    // A batch whose buffers cannot fit in memory is refused before anything is allocated.
    let out = glec(&[
        "run",
        "models/le_chain.gle",
        "--steps",
        "1",
        "--set",
        "batch=1000000000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GB at batch 1000000000, more than the"), "{stderr}");
}

/// A run that blows up names the variable, neuron and step, and leaves no output file behind.
#[test]
fn numerical_blow_up_is_reported_and_writes_nothing() {
    let dir = temp_dir("nan");
    let model = dir.join("unstable.gle");
    std::fs::write(
        &model,
        "neuron N {\n    param tau = 1\n    state u\n    let uhat = D[tau] u\n    rate r = exp(uhat)\n    mismatch e = D[tau] u - input\n}\n\
         input x[1] = 1\npopulation a[2] : N\npopulation b[2] : N\nconnect x -> a : dense(init: 50)\nconnect a -> b : dense(init: 50)\n\
         run {\n    dt 0.1\n    steps 100\n    record b.r every 1\n}\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = glec(&["run", model.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("numerical blow-up: `b.r` is inf for neuron 0 (batch row 0) at step"),
        "{stderr}"
    );
    assert!(!out_dir.join("b.r.npy").exists(), "no partial record may be written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Missing or mis-shaped data files are clear errors pointing at their declaration.
#[test]
fn bad_data_files_are_reported() {
    let dir = temp_dir("data");
    let golden = std::fs::read_to_string(root().join("models/gle_lagline_golden.gle")).unwrap();
    // Missing file.
    let model = dir.join("missing.gle");
    std::fs::write(&model, golden.replace("../tests/golden/lagline/x.npy", "nowhere.npy")).unwrap();
    let out = glec(&["run", model.to_str().unwrap(), "--steps", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read `") && stderr.contains("nowhere.npy"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--> "),
        "the error points at the input's span: {stderr}"
    );
    // Wrong shape: a (steps, 4) stream for a batch of 5.
    let model = dir.join("shape.gle");
    let abs = root().join("tests/golden/lagline/x.npy");
    std::fs::write(
        &model,
        golden
            .replace("../tests/golden/lagline/x.npy", abs.to_str().unwrap())
            .replace("batch 4", "batch 5"),
    )
    .unwrap();
    let out = glec(&["run", model.to_str().unwrap(), "--steps", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has shape [20000, 4], but input `x` needs (steps, 5)"));
    // Not an array at all.
    let bogus = dir.join("bogus.npy");
    std::fs::write(&bogus, b"this is not numpy").unwrap();
    std::fs::write(
        &model,
        golden.replace("../tests/golden/lagline/x.npy", bogus.to_str().unwrap()),
    )
    .unwrap();
    let out = glec(&["run", model.to_str().unwrap(), "--steps", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid .npy array"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A time constant drawn below dt is rejected before running, at the parameter's span.
#[test]
fn drawn_time_constant_below_dt_is_rejected() {
    let dir = temp_dir("tau");
    let model = dir.join("tau.gle");
    std::fs::write(
        &model,
        "neuron N {\n    param tau = 1\n    state u\n    let uhat = D[tau] u\n    rate r = uhat\n    mismatch e = D[tau] u - input\n}\n\
         input x[1] = 1\npopulation a[50] : N(tau: uniform(0, 0.2))\nconnect x -> a : dense(init: 1)\nrun {\n    dt 0.1\n    steps 10\n}\n",
    )
    .unwrap();
    let out = glec(&["run", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("below the time step dt = 0.1"), "{stderr}");
    assert!(stderr.contains("uniform(0, 0.2)"), "points at the draw: {stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `glec run --resume` continues from `OUT/checkpoint.npz` and ends where an uninterrupted run
/// ends, bit for bit (the recorded weights are compared exactly).
#[test]
fn resume_from_a_checkpoint_via_the_cli() {
    let dir = temp_dir("resume");
    let model = dir.join("lagline.gle");
    let text = std::fs::read_to_string(root().join("models/gle_lagline_golden.gle"))
        .unwrap()
        .replace(
            "../tests/golden/lagline/x.npy",
            root().join("tests/golden/lagline/x.npy").to_str().unwrap(),
        )
        .replace(
            "    record y.r, ty.r every 1",
            "    record weights every 1\n    checkpoint 1000",
        );
    std::fs::write(&model, text).unwrap();
    let (whole, part) = (dir.join("whole"), dir.join("part"));
    let m = model.to_str().unwrap();
    assert!(
        glec(&["run", m, "--steps", "3000", "--out", whole.to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        glec(&["run", m, "--steps", "2500", "--out", part.to_str().unwrap()])
            .status
            .success()
    );
    let ckpt = part.join("checkpoint.npz");
    let out = glec(&[
        "run",
        m,
        "--steps",
        "3000",
        "--resume",
        ckpt.to_str().unwrap(),
        "--out",
        part.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ran 1000 steps (resumed at step 2000)"));
    let a = gle_runtime::npy::read(&whole.join("weights.npy")).unwrap();
    let b = gle_runtime::npy::read(&part.join("weights.npy")).unwrap();
    let last = |x: &gle_runtime::npy::Array| x.data[x.data.len() - 4..].to_vec();
    assert_eq!(last(&a), last(&b));
    // A checkpoint of another model is refused.
    let out = glec(&["run", "models/le_chain.gle", "--resume", ckpt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("written for a different model"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reader that stops early (`glec run … | head -1`) does not make glec panic, and the run
/// still writes its files.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = temp_dir("pipe");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_glec"))
        .args(["run", "models/le_fourier.gle", "--steps", "2000", "--out"])
        .arg(&dir)
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
    assert!(dir.join("target.npy").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A resumed run continues the learning curves of its directory: stopped inside a phase or at
/// a phase's end and resumed, `metrics.csv` ends identical to an uninterrupted run's.
#[test]
fn resume_continues_the_learning_curves() {
    let dir = temp_dir("resume-metrics");
    let model = dir.join("fourier.gle");
    let text = std::fs::read_to_string(root().join("models/le_fourier.gle"))
        .unwrap()
        .replace("    record out.uhat, target every 20", "    checkpoint 20000");
    std::fs::write(&model, text).unwrap();
    let m = model.to_str().unwrap();
    let whole = dir.join("whole");
    assert!(glec(&["run", m, "--out", whole.to_str().unwrap()]).status.success());
    let expected = std::fs::read_to_string(whole.join("metrics.csv")).unwrap();
    for stop in ["100000", "80000"] {
        let part = dir.join(format!("part{stop}"));
        let p = part.to_str().unwrap();
        assert!(glec(&["run", m, "--steps", stop, "--out", p]).status.success());
        let ckpt = part.join("checkpoint.npz");
        let out = glec(&["run", m, "--resume", ckpt.to_str().unwrap(), "--out", p]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let resumed = std::fs::read_to_string(part.join("metrics.csv")).unwrap();
        assert_eq!(resumed, expected, "stopped at step {stop}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--threads 2` shares each JIT step between two threads and prints the same results, as do
/// more threads than cores (capped); it is a usage error with the interpreter or below 1.
#[test]
fn two_threads_print_the_same_results() {
    let run = |threads: &str| {
        let out = glec(&[
            "run",
            "models/le_mnist1d_mlp.gle",
            "--steps",
            "1500",
            "--threads",
            threads,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // Everything but the timing line.
        stdout
            .lines()
            .filter(|l| !l.starts_with("ran "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(run("1"), run("2"));
    // More threads than cores would make every step wait for the scheduler: they are capped,
    // with a note, and print the same results.
    let out = glec(&["run", "models/le_chain.gle", "--steps", "5", "--threads", "256"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("note: `--threads 256` is more than the"));
    assert_eq!(run("1"), run("256"));
    let out = glec(&["run", "models/le_chain.gle", "--threads", "2", "--backend", "interp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("applies to the JIT backend only"));
    let out = glec(&["run", "models/le_chain.gle", "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The loss and accuracy of a learning phase are read while the cost pulls the output towards
/// the target, and the phase line says so; a phase with `learn off` and the cost weight at 0
/// is not marked.
#[test]
fn learning_phases_say_their_output_is_nudged() {
    let dir = temp_dir("nudged");
    let model = dir.join("nudged.gle");
    std::fs::write(
        &model,
        "neuron L {\n    state u\n    rate r = u\n    mismatch e = D[1] u - input\n}\n\
         const beta = 0.5\ninput x[2] = 1\ninput y[2] = 0.5\npopulation out[2] : L\n\
         connect x -> out : dense(init: 0.1) learn\n\
         energy E = mismatch(out) + beta * mse(out.r, y)\nlearn {\n    errors instantaneous\n    optimizer sgd(lr: 0.01)\n}\n\
         run {\n    dt 0.1\n    phase train { steps 20 }\n    phase test { steps 20  learn off  beta 0 }\n}\n",
    )
    .unwrap();
    let out = glec(&["run", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{stdout}"))
    };
    assert!(line("train").contains("(output nudged by the target)"), "{stdout}");
    assert!(
        line("test").contains("loss") && !line("test").contains("nudged"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `glec run`: runs a model's protocol (JIT by default, or the reference interpreter), shows
//! progress, prints a summary and writes the recorded variables.

use gle_ir::{Model, Recorded};
use gle_runtime::{RunError, Simulation, npy};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

/// What `glec run` was asked to do besides the model's own protocol.
pub struct RunOptions {
    /// Stop after this many steps.
    pub max_steps: Option<usize>,
    /// Where recorded variables, metrics and checkpoints are written.
    pub out: Option<std::path::PathBuf>,
    /// A checkpoint to resume from.
    pub resume: Option<std::path::PathBuf>,
    /// The step executor.
    pub backend: crate::Backend,
    /// Threads sharing each JIT step.
    pub threads: usize,
}

/// One `record` target being collected: its file name, shape per sample, and values.
struct Recording {
    name: String,
    target: Recorded,
    every: usize,
    per_sample: Vec<usize>,
    values: Vec<f64>,
    samples: usize,
}

/// Runs `model`; returns the summary lines printed on success.
pub fn run(model: Model, base_dir: &Path, opts: &RunOptions) -> Result<Vec<String>, RunError> {
    let program = gle_derive::compile(&model).map_err(|e| RunError::at(e.message, e.span))?;
    let stream_steps = Simulation::protocol_steps(&model)?;
    let stream_steps = opts.max_steps.map_or(stream_steps, |m| m.min(stream_steps));
    let checkpoint_every = model.protocol.checkpoint_every;
    // The simulation first: it refuses buffers that cannot fit in memory before the JIT sizes
    // its scratch space by the same shapes.
    let mut sim = Simulation::new(model, program, base_dir, stream_steps)?;
    if opts.backend == crate::Backend::Jit {
        let sgd = gle_runtime::sgd_learnables(&sim.model, &sim.program);
        let step = gle_jit::compile_absorbing(&sim.program, sim.model.protocol.batch, opts.threads, &sgd);
        sim.set_kernel(Box::new(step.map_err(|e| RunError::new(e.to_string()))?));
    }
    if let Some(path) = &opts.resume {
        let bytes = std::fs::read(path)
            .map_err(|e| RunError::new(format!("cannot read checkpoint `{}`: {e}", path.display())))?;
        sim.restore(&bytes, &path.display().to_string())?;
    }
    if let (Some(every), Some(_)) = (checkpoint_every, &opts.out) {
        sim.enable_checkpoints(every as u64);
    }
    let resumed_at = sim.steps();
    let total = opts.max_steps.map_or(sim.total_steps(), |m| m.min(sim.total_steps()));
    sim.set_step_limit(total as u64);
    let mut recordings = recordings(&sim);
    // Records need only their own steps (the progress line is updated when records are taken,
    // or after each run of steps the JIT takes at once).
    let observe_every = recordings.iter().map(|r| r.every as u64).fold(0, gcd);
    let started = Instant::now();
    // The progress line goes to stderr, and only when a person is watching.
    let progress = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let mut last_shown = Instant::now();
    let show_phases = sim.model.protocol.readout.is_some() || !sim.program.costs.is_empty();
    // A resumed run continues the learning curves its directory already holds, up to the
    // checkpoint's step.
    let mut reports: Vec<gle_runtime::PhaseReport> = match (&opts.resume, &opts.out) {
        (Some(_), Some(out)) => earlier_reports(&out.join("metrics.csv"), resumed_at),
        _ => Vec::new(),
    };
    let mut continuing = opts.resume.is_some();
    if let Some(out) = &opts.out {
        std::fs::create_dir_all(out).map_err(|e| RunError::new(format!("cannot create `{}`: {e}", out.display())))?;
    }
    let checkpoint_path = opts.out.as_ref().map(|o| o.join("checkpoint.npz"));
    let metrics_path = opts.out.as_ref().map(|o| o.join("metrics.csv"));
    let mut save = |_step: u64, bytes: Vec<u8>| -> Result<(), RunError> {
        match &checkpoint_path {
            Some(p) => write_atomic(p, &bytes),
            None => Ok(()),
        }
    };
    let mut observe = |s: &Simulation| -> Result<(), RunError> {
        let n = s.steps() as usize;
        for r in &mut recordings {
            if (n - 1).is_multiple_of(r.every) {
                r.values.extend(s.recorded(r.target));
                r.samples += 1;
            }
        }
        if progress && last_shown.elapsed().as_millis() >= 200 {
            last_shown = Instant::now();
            let _ = write!(
                std::io::stderr(),
                "\r  step {n} / {total} ({:.0} %)",
                100.0 * n as f64 / total.max(1) as f64
            );
        }
        Ok(())
    };
    let mut report = |r: &gle_runtime::PhaseReport| -> Result<(), RunError> {
        if show_phases && r.steps > 0 {
            if progress {
                let _ = write!(std::io::stderr(), "\r{}\r", " ".repeat(40));
            }
            say!("{}", phase_line(r));
        }
        if r.steps > 0 {
            // The first phase after a resume is the one in progress at the checkpoint, whole
            // (its loss and accuracy cover all its steps): a carried row that ended at the
            // checkpoint was that phase, or a fragment of it cut by `--steps`.
            if std::mem::take(&mut continuing) && reports.last().is_some_and(|l| l.end_step == resumed_at) {
                reports.pop();
            }
            reports.push(r.clone());
        }
        // Written after every phase, so an interrupted run keeps the curves it has.
        match &metrics_path {
            Some(path) if show_phases => write_atomic(path, metrics_csv(&reports).as_bytes()),
            _ => Ok(()),
        }
    };
    let result = sim.run_protocol_with(&mut gle_runtime::Hooks {
        observe: &mut observe,
        observe_every,
        report: &mut report,
        save: &mut save,
    });
    if progress {
        let _ = write!(std::io::stderr(), "\r{}\r", " ".repeat(40));
    }
    result?;
    let elapsed = started.elapsed().as_secs_f64();
    let steps = sim.steps() - resumed_at;
    let mut lines = vec![format!(
        "ran {steps} steps{} of `{}` (batch {}) in {elapsed:.3} s: {:.0} steps/s",
        if resumed_at > 0 {
            format!(" (resumed at step {resumed_at})")
        } else {
            String::new()
        },
        sim.model.name,
        sim.model.protocol.batch,
        steps as f64 / elapsed.max(1e-9)
    )];
    for l in &sim.program.learnables {
        let v = sim.buffer(l.param);
        let shown: Vec<String> = v.iter().take(4).map(|x| format!("{x:.6}")).collect();
        let more = if v.len() > 4 {
            format!(", … ({} values)", v.len())
        } else {
            String::new()
        };
        lines.push(format!("  {} = [{}{more}]", l.name, shown.join(", ")));
    }
    if let Some(out) = &opts.out {
        if show_phases && !reports.is_empty() {
            lines.push(format!("  wrote {}", out.join("metrics.csv").display()));
        }
        let meta = run_meta(&sim, &recordings, resumed_at);
        write_atomic(&out.join("run.json"), meta.as_bytes())?;
        for r in &recordings {
            let mut shape = vec![r.samples];
            shape.extend(&r.per_sample);
            let path = out.join(format!("{}.npy", r.name));
            npy::write(&path, &shape, &r.values).map_err(RunError::new)?;
            lines.push(format!("  wrote {} {:?}", path.display(), shape));
        }
    }
    Ok(lines)
}

fn recordings(sim: &Simulation) -> Vec<Recording> {
    let m = &sim.model;
    let batch = m.protocol.batch;
    let mut out = Vec::new();
    for rec in &m.protocol.records {
        for &t in &rec.targets {
            let (name, per_sample) = match t {
                Recorded::PopVar(p, var) => {
                    let pop = &m.populations[p];
                    let nt = &m.neurons[pop.neuron];
                    let var_name = gle_ir::Printer::var_name(nt, var);
                    let shape = if matches!(var, gle_ir::NeuronVar::Param(_)) {
                        vec![pop.size]
                    } else {
                        vec![batch, pop.size]
                    };
                    (format!("{}.{var_name}", pop.name), shape)
                }
                Recorded::Input(i) => (m.inputs[i].name.clone(), vec![batch, m.inputs[i].size]),
                Recorded::Weights(k) => (format!("{}.W", m.projections[k].name), vec![sim.recorded(t).len()]),
                Recorded::AllWeights => ("weights".to_string(), vec![sim.recorded(t).len()]),
            };
            out.push(Recording {
                name,
                target: t,
                every: rec.every,
                per_sample,
                values: Vec::new(),
                samples: 0,
            });
        }
    }
    out
}

/// The rows of an earlier run's `metrics.csv` that ended at or before step `until` (none if the
/// file is missing or not ours).
fn earlier_reports(path: &Path, until: u64) -> Vec<gle_runtime::PhaseReport> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(METRICS_HEADER) {
        return Vec::new();
    }
    let parse = |line: &str| -> Option<gle_runtime::PhaseReport> {
        let f: Vec<&str> = line.split(',').collect();
        let opt = |v: &str| {
            if v.is_empty() {
                Some(None)
            } else {
                v.parse().ok().map(Some)
            }
        };
        Some(gle_runtime::PhaseReport {
            name: f.get(1)?.to_string(),
            steps: f.get(2)?.parse().ok()?,
            end_step: f.get(3)?.parse().ok()?,
            loss: opt(f.get(4)?)?,
            accuracy: opt(f.get(5)?)?,
            // (Not in metrics.csv: these reports are only written back to it.)
            nudged: false,
            lr_scale: f.get(6)?.parse().ok()?,
        })
    };
    lines
        .map_while(parse)
        .filter(|r| r.steps > 0 && r.end_step <= until)
        .collect()
}

/// The header line of `metrics.csv`.
const METRICS_HEADER: &str = "phase,name,steps,end_step,loss,accuracy,lr_scale";

/// `metrics.csv`: one row per finished phase.
fn metrics_csv(reports: &[gle_runtime::PhaseReport]) -> String {
    let mut csv = format!("{METRICS_HEADER}\n");
    for (k, r) in reports.iter().enumerate() {
        let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
        csv.push_str(&format!(
            "{k},{},{},{},{},{},{}\n",
            r.name,
            r.steps,
            r.end_step,
            opt(r.loss),
            opt(r.accuracy),
            r.lr_scale
        ));
    }
    csv
}

/// `run.json`: what `glec plot` needs to put recorded samples on a time axis (dt, the step the
/// run started or resumed at, each recording's interval) and name the columns of the weight
/// recordings.
fn run_meta(sim: &Simulation, recordings: &[Recording], start_step: u64) -> String {
    let mut records = serde_json::Map::new();
    for r in recordings {
        let columns: Vec<String> = match r.target {
            Recorded::AllWeights => sim.program.learnables.iter().flat_map(|l| labels(sim, l)).collect(),
            Recorded::Weights(k) => {
                let name = format!("{}.W", sim.model.projections[k].name);
                sim.program
                    .learnables
                    .iter()
                    .filter(|l| l.name == name)
                    .flat_map(|l| labels(sim, l))
                    .collect()
            }
            _ => Vec::new(),
        };
        records.insert(
            format!("{}.npy", r.name),
            serde_json::json!({ "every": r.every, "columns": columns }),
        );
    }
    let meta = serde_json::json!({
        "model": sim.model.name,
        "dt": sim.model.protocol.dt,
        "start_step": start_step,
        "batch": sim.model.protocol.batch,
        "records": records,
    });
    format!("{meta:#}\n")
}

/// Column labels of a learnable parameter: its name, indexed when it has several values.
fn labels(sim: &Simulation, l: &gle_derive::program::Learnable) -> Vec<String> {
    let n = sim.buffer(l.param).len();
    if n == 1 {
        vec![l.name.clone()]
    } else {
        (0..n).map(|i| format!("{}[{i}]", l.name)).collect()
    }
}

/// One line per phase: its name, steps, loss and accuracy.
fn phase_line(r: &gle_runtime::PhaseReport) -> String {
    let mut line = format!("{:<8} {:>7} steps", r.name, r.steps);
    if let Some(loss) = r.loss {
        line.push_str(&format!("  loss {loss:.5}"));
    }
    if let Some(acc) = r.accuracy {
        line.push_str(&format!("  accuracy {:.2} %", 100.0 * acc));
    }
    if r.nudged && (r.loss.is_some() || r.accuracy.is_some()) {
        line.push_str("  (output nudged by the target)");
    }
    if r.lr_scale != 1.0 {
        line.push_str(&format!("  lr × {}", r.lr_scale));
    }
    line
}

/// Writes a file atomically (a temporary file renamed into place when complete).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            RunError::new(format!("cannot write `{}`: {e}", path.display()))
        })
}

/// The greatest common divisor (`gcd(0, b) = b`).
fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

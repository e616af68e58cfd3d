//! `glec`: the command-line compiler for LE/GLE neuron models.

use clap::{Parser, Subcommand, ValueEnum};
use gle_ir::{Model, check_source_with};
use gle_syntax::{Diagnostic, SourceFile, has_errors};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` that ignores a closed stdout (`glec run … | head`): the run goes on and still
/// writes its files instead of panicking on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout, like [`say!`].
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod plot;
mod run;

/// Compile and check neuron models written in the .gle language.
#[derive(Parser)]
#[command(name = "glec", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check a model; print a one-line summary, or the diagnostics.
    Check {
        /// The .gle file.
        model: PathBuf,
        /// Output format of diagnostics and summary.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Run a model's protocol (JIT by default) and write what it records.
    Run {
        /// The .gle file.
        model: PathBuf,
        /// Override a constant or the run settings dt (> 0), batch (whole, ≥ 1), seed (whole,
        /// ≥ 0): `--set beta=0.1`.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// Stop after this many steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Directory for recorded variables (one .npy each).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed of every random draw (overrides the model's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Resume from a checkpoint written by an earlier run (`OUT/checkpoint.npz`).
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Execute steps with the Cranelift JIT or the reference interpreter.
        #[arg(long, value_enum, default_value_t = Backend::Jit)]
        backend: Backend,
        /// Threads that share each JIT step (worth it for large batches, or for networks of
        /// several large layers: each thread runs whole layers where that balances the work,
        /// else a share of every statement's rows; the threads meet at barriers every step); at
        /// most the machine's cores.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
    },
    /// Plot what `glec run --out DIR` wrote: every recorded trace and the learning curves.
    Plot {
        /// The directory a run wrote (`--out` of `glec run`).
        dir: PathBuf,
        /// Where the images go (default: DIR/plots).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Image format.
        #[arg(long, value_enum, default_value_t = plot::ImageFormat::Both)]
        format: plot::ImageFormat,
        /// Draw the single-column traces together in one figure (`traces`).
        #[arg(long)]
        combine: bool,
    },
    /// Print the equations glec derives from a model's energy.
    Explain {
        /// The .gle file.
        model: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
        format: ExplainFormat,
    },
    /// Print an intermediate form of a model.
    Emit {
        /// What to print.
        #[arg(value_enum)]
        what: Emit,
        /// The .gle file.
        model: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// rustc-style text on stderr.
    Human,
    /// One JSON object on stdout, for editors.
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExplainFormat {
    /// Plain text.
    Text,
    /// Markdown sections with code blocks.
    Markdown,
    /// LaTeX `align*` environments.
    Latex,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// The checked model IR as text.
    Ir,
    /// The Cranelift IR of the JIT-compiled step.
    Clif,
    /// The Rust module that `model!("MODEL")` expands to (MODEL relative to the crate root).
    Rust,
}

/// How steps are executed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Native code compiled by Cranelift (the default).
    Jit,
    /// The reference interpreter.
    Interp,
}

/// `requested` threads, or as many as this machine can run at once if that is fewer (with a
/// note): a team's threads wait for each other by spinning, so threads beyond the cores make
/// every step wait for the scheduler (three threads on two cores ran a small model ~300×
/// slower than one).
fn usable_threads(requested: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if requested > cores {
        eprintln!("note: `--threads {requested}` is more than the {cores} cores available here; using {cores}");
        return cores;
    }
    requested
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { model, format } => check(&model, format),
        Command::Run {
            model,
            sets,
            steps,
            out,
            seed,
            resume,
            backend,
            threads,
        } => {
            if threads > 1 && backend == Backend::Interp {
                eprintln!("error: `--threads` applies to the JIT backend only");
                return ExitCode::from(2);
            }
            let opts = run::RunOptions {
                max_steps: steps,
                out,
                resume,
                backend,
                threads: usable_threads(threads.into()),
            };
            run_command(&model, &sets, seed, opts)
        }
        Command::Plot {
            dir,
            out,
            format,
            combine,
        } => match plot::plot_dir(&dir, out.as_deref(), format, combine) {
            Ok(files) => {
                for f in files {
                    say!("wrote {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Explain { model, format } => {
            let Some(m) = load(&model, Format::Human) else {
                return ExitCode::FAILURE;
            };
            match gle_derive::compile(&m) {
                Ok(program) => {
                    let f = match format {
                        ExplainFormat::Text => gle_derive::explain::Format::Text,
                        ExplainFormat::Markdown => gle_derive::explain::Format::Markdown,
                        ExplainFormat::Latex => gle_derive::explain::Format::Latex,
                    };
                    say_raw!("{}", gle_derive::explain::explain(&m, &program, f));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    report_late(&model, &e.to_diagnostic());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Emit {
            what: what @ (Emit::Clif | Emit::Rust),
            model,
        } => {
            let Some(m) = load(&model, Format::Human) else {
                return ExitCode::FAILURE;
            };
            let program = match gle_derive::compile(&m) {
                Ok(p) => p,
                Err(e) => {
                    report_late(&model, &e.to_diagnostic());
                    return ExitCode::FAILURE;
                }
            };
            if what == Emit::Rust {
                let path = model.to_string_lossy().replace('\\', "/");
                return match gle_codegen::emit_rust(&m, &program, &gle_codegen::Source::File(&path)) {
                    Ok(code) => {
                        say_raw!("{code}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            let sgd = gle_runtime::sgd_learnables(&m, &program);
            match gle_jit::compile_absorbing(&program, m.protocol.batch, 1, &sgd) {
                Ok(k) => {
                    say_raw!("{}", k.clif());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Emit { what: Emit::Ir, model } => match load(&model, Format::Human) {
            Some(m) => {
                say_raw!("{}", m.dump());
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        },
    }
}

/// Reads and checks `path`, printing diagnostics; `None` if it has errors.
fn load(path: &Path, format: Format) -> Option<Model> {
    load_with(path, format, &[])
}

/// [`load`] with `--set` overrides.
fn load_with(path: &Path, format: Format, overrides: &[(String, f64)]) -> Option<Model> {
    let (file, model, diags) = match read(path) {
        Ok(source) => {
            let (model, diags) = check_source_with(&path.display().to_string(), source.text(), overrides);
            (source, model, diags)
        }
        Err(msg) => {
            report_io(path, &msg, format);
            return None;
        }
    };
    report(&file, &diags, format, model.as_ref());
    model
}

fn read(path: &Path) -> Result<SourceFile, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok(SourceFile::new(path.display().to_string(), text))
}

fn report_io(path: &Path, msg: &str, format: Format) {
    match format {
        Format::Human => eprintln!("error: cannot read `{}`: {msg}", path.display()),
        Format::Json => say!(
            "{}",
            serde_json::json!({ "file": path.display().to_string(), "ok": false, "error": format!("cannot read: {msg}"), "diagnostics": [] })
        ),
    }
}

fn report(file: &SourceFile, diags: &[Diagnostic], format: Format, model: Option<&Model>) {
    match format {
        Format::Human => {
            for d in diags {
                eprintln!("{}\n", d.render(file));
            }
            let errors = diags
                .iter()
                .filter(|d| d.severity == gle_syntax::Severity::Error)
                .count();
            if errors > 0 {
                eprintln!(
                    "error: `{}` has {errors} error{}",
                    file.name(),
                    if errors == 1 { "" } else { "s" }
                );
            }
        }
        Format::Json => {
            let summary = model.map(|m| {
                let s = m.summary();
                serde_json::json!({
                    "model": m.name,
                    "populations": s.populations,
                    "neurons": s.neurons,
                    "synapses": s.synapses,
                    "learnable": s.learnable,
                })
            });
            say!(
                "{}",
                serde_json::json!({
                    "file": file.name(),
                    "ok": !has_errors(diags),
                    "diagnostics": diags.iter().map(|d| d.to_json(file)).collect::<Vec<_>>(),
                    "summary": summary,
                })
            );
        }
    }
}

fn check(path: &Path, format: Format) -> ExitCode {
    match load(path, format) {
        Some(m) => {
            if format == Format::Human {
                let s = m.summary();
                say!(
                    "{}: ok: model `{}`: {}, {}, {}, {}",
                    path.display(),
                    m.name,
                    count(s.populations, "population"),
                    count(s.neurons, "neuron"),
                    count(s.synapses, "synapse"),
                    count(s.learnable, "learnable parameter"),
                );
            }
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

/// Prints a diagnostic found after checking (derivation, runtime) against the model's source.
fn report_late(path: &Path, d: &Diagnostic) {
    match read(path) {
        Ok(file) if d.span != gle_syntax::Span::default() => eprintln!("{}\n", d.render(&file)),
        _ => eprintln!("error[{}]: {}", d.code, d.message),
    }
}

fn run_command(path: &Path, sets: &[String], seed: Option<u64>, opts: run::RunOptions) -> ExitCode {
    let mut overrides = Vec::new();
    for s in sets {
        let parsed = s
            .split_once('=')
            .and_then(|(k, v)| Some((k.trim().to_string(), v.trim().parse::<f64>().ok()?)));
        match parsed {
            Some((k, v)) if v.is_finite() => {
                if let Some(rule) = gle_ir::override_problem(&k, v) {
                    eprintln!("error: `--set {s}`: {rule}");
                    return ExitCode::from(2);
                }
                overrides.push((k, v));
            }
            _ => {
                eprintln!("error: `--set {s}`: expected NAME=NUMBER, such as `--set beta=0.1`");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(seed) = seed {
        // Seeds travel as overrides (f64): larger ones would be rounded to another seed.
        if seed > gle_ir::MAX_SEED {
            eprintln!("error: `--seed {seed}`: {}", gle_ir::SEED_RULE);
            return ExitCode::from(2);
        }
        overrides.push(("seed".to_string(), seed as f64));
    }
    let Some(model) = load_with(path, Format::Human, &overrides) else {
        return ExitCode::FAILURE;
    };
    for (name, _) in &overrides {
        if !["dt", "batch", "seed"].contains(&name.as_str()) && !model.consts.iter().any(|c| &c.name == name) {
            let consts: Vec<&str> = model.consts.iter().map(|c| c.name.as_str()).collect();
            eprintln!(
                "error: `--set {name}=…`: `{}` has no constant or run setting named `{name}` (constants: {}; run settings: dt, batch, seed)",
                path.display(),
                if consts.is_empty() {
                    "none".to_string()
                } else {
                    consts.join(", ")
                }
            );
            return ExitCode::from(2);
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    match run::run(model, base, &opts) {
        Ok(lines) => {
            for l in lines {
                say!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            report_late(path, &e.to_diagnostic());
            ExitCode::FAILURE
        }
    }
}

/// `1 neuron`, `2 neurons`.
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

//! `glec`: the command-line compiler for LE/GLE neuron models.

use clap::{Parser, Subcommand, ValueEnum};
use gle_ir::{Model, check_source};
use gle_syntax::{Diagnostic, SourceFile, has_errors};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
enum Emit {
    /// The checked model IR as text.
    Ir,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { model, format } => check(&model, format),
        Command::Emit { what: Emit::Ir, model } => match load(&model, Format::Human) {
            Some(m) => {
                print!("{}", m.dump());
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        },
    }
}

/// Reads and checks `path`, printing diagnostics; `None` if it has errors.
fn load(path: &Path, format: Format) -> Option<Model> {
    let (file, model, diags) = match read(path) {
        Ok(source) => {
            let (model, diags) = check_source(&path.display().to_string(), source.text());
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
        Format::Json => println!(
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
            println!(
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
                println!(
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

/// `1 neuron`, `2 neurons`.
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

//! `glec plot`: line plots (PNG and SVG) of what `glec run --out DIR` wrote: every recorded
//! trace (`*.npy`) against time, and the learning curves of `metrics.csv`.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The most series drawn in one plot; wider traces show their first columns.
const MAX_SERIES: usize = 12;

/// Which image formats to write.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormat {
    /// Raster images.
    Png,
    /// Vector images.
    Svg,
    /// Both.
    Both,
}

/// How a recorded file maps to time and which names its columns carry (from `run.json`).
#[derive(Clone, Debug, Default)]
struct RecordMeta {
    every: usize,
    columns: Vec<String>,
}

/// A named line: its label and points.
type Series = (String, Vec<(f64, f64)>);

/// One figure: named lines over a common x axis.
struct Figure {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<Series>,
}

/// Plots everything in `dir` into `out` (default `dir/plots`); returns the files written. With
/// `combine`, the single-column traces are drawn together in one figure, `traces`.
pub fn plot_dir(dir: &Path, out: Option<&Path>, format: ImageFormat, combine: bool) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    let mut npys: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .collect();
    npys.sort_by_key(|p| natural_key(&p.to_string_lossy()));
    let meta = read_meta(dir)?;
    let mut figures = Vec::new();
    for path in &npys {
        let name = path
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        let file = path
            .file_name()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        let array = gle_runtime::npy::read(path)?;
        let record = meta.records.get(&file).cloned().unwrap_or_default();
        figures.push((
            name.clone(),
            trace_figure(&name, &array, &record, meta.dt, meta.start_step),
        ));
    }
    if combine {
        let (single, wide): (Vec<_>, Vec<_>) = figures.into_iter().partition(|(_, f)| f.series.len() == 1);
        figures = wide;
        if !single.is_empty() {
            let x_label = single[0].1.x_label.clone();
            let series: Vec<Series> = single
                .into_iter()
                .flat_map(|(_, f)| f.series)
                .take(MAX_SERIES)
                .collect();
            let figure = Figure {
                title: "recorded traces".into(),
                x_label,
                y_label: "value".into(),
                series,
            };
            figures.insert(0, ("traces".into(), figure));
        }
    }
    let metrics = dir.join("metrics.csv");
    if metrics.exists() {
        let text =
            std::fs::read_to_string(&metrics).map_err(|e| format!("cannot read `{}`: {e}", metrics.display()))?;
        figures.extend(learning_curves(&text, &metrics.display().to_string())?);
    }
    if figures.is_empty() {
        return Err(format!(
            "nothing to plot in `{}`: it holds no .npy traces and no metrics.csv (write them with `glec run MODEL --out {}`)",
            dir.display(),
            dir.display()
        ));
    }
    let out = out.map_or_else(|| dir.join("plots"), Path::to_path_buf);
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create `{}`: {e}", out.display()))?;
    register_font()?;
    let mut written = Vec::new();
    for (name, figure) in &figures {
        if matches!(format, ImageFormat::Png | ImageFormat::Both) {
            let path = out.join(format!("{name}.png"));
            draw(BitMapBackend::new(&path, (900, 520)).into_drawing_area(), figure)
                .map_err(|e| format!("cannot draw `{}`: {e}", path.display()))?;
            written.push(path);
        }
        if matches!(format, ImageFormat::Svg | ImageFormat::Both) {
            let path = out.join(format!("{name}.svg"));
            draw(SVGBackend::new(&path, (900, 520)).into_drawing_area(), figure)
                .map_err(|e| format!("cannot draw `{}`: {e}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Orders names with numbers by value: `l2` before `l10`.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let text_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let (text, tail) = rest.split_at(text_len);
        let digits = tail.find(|c: char| !c.is_ascii_digit()).unwrap_or(tail.len());
        let (number, tail) = tail.split_at(digits);
        key.push((text.to_string(), number.parse().unwrap_or(0)));
        rest = tail;
    }
    key
}

/// The run's time step, the step it started (or resumed) at, and per-file recording metadata.
struct Meta {
    dt: Option<f64>,
    start_step: usize,
    records: std::collections::HashMap<String, RecordMeta>,
}

/// Reads `dir/run.json` if present (older runs lack it: their x axis is the sample index).
fn read_meta(dir: &Path) -> Result<Meta, String> {
    let path = dir.join("run.json");
    let mut meta = Meta {
        dt: None,
        start_step: 0,
        records: Default::default(),
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(meta);
    };
    let bad = |why: &str| format!("`{}`: {why}", path.display());
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    meta.dt = json["dt"].as_f64();
    meta.start_step = json["start_step"].as_u64().unwrap_or(0) as usize;
    if let Some(records) = json["records"].as_object() {
        for (file, r) in records {
            let every = r["every"].as_u64().ok_or_else(|| bad("a record lacks `every`"))? as usize;
            let columns = r["columns"]
                .as_array()
                .map(|c| c.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default();
            meta.records.insert(file.clone(), RecordMeta { every, columns });
        }
    }
    Ok(meta)
}

/// A recorded trace `[samples, …]` as up to [`MAX_SERIES`] lines over time.
fn trace_figure(
    name: &str,
    array: &gle_runtime::npy::Array,
    record: &RecordMeta,
    dt: Option<f64>,
    start_step: usize,
) -> Figure {
    let samples = array.shape.first().copied().unwrap_or(0);
    let width = array.data.len().checked_div(samples).unwrap_or(0);
    let shown = width.min(MAX_SERIES);
    let (x_label, x_of): (String, Box<dyn Fn(usize) -> f64>) = match (dt, record.every) {
        (Some(dt), every) if every > 0 => {
            // Samples are taken after steps n with (n − 1) a multiple of `every`, from the first
            // such step after `start_step`.
            let first = start_step.div_ceil(every) * every;
            (
                "time".into(),
                Box::new(move |k| ((first + k * every) as f64 + 1.0) * dt),
            )
        }
        _ => ("sample".into(), Box::new(|k| k as f64)),
    };
    let series = (0..shown)
        .map(|c| {
            let label = record.columns.get(c).cloned().unwrap_or_else(|| {
                if width == 1 {
                    name.to_string()
                } else {
                    format!("{name}[{c}]")
                }
            });
            let points = (0..samples).map(|k| (x_of(k), array.data[k * width + c])).collect();
            (label, points)
        })
        .collect();
    let title = if shown < width {
        format!("{name} (first {shown} of {width} columns)")
    } else {
        name.to_string()
    };
    Figure {
        title,
        x_label,
        y_label: name.to_string(),
        series,
    }
}

/// Loss and accuracy per phase name over the phases' repetitions (epochs).
fn learning_curves(csv: &str, what: &str) -> Result<Vec<(String, Figure)>, String> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(phase), Some(loss), Some(acc)) = (col("name"), col("loss"), col("accuracy")) else {
        return Err(format!("{what}: expected the columns name, loss and accuracy"));
    };
    let mut curves: Vec<(&str, Vec<Series>)> = vec![("loss", Vec::new()), ("accuracy", Vec::new())];
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let Some(name) = fields.get(phase) else {
            return Err(format!("{what}:{}: too few fields", n + 2));
        };
        for (k, column) in [loss, acc].into_iter().enumerate() {
            let Some(value) = fields.get(column).and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            let value = if k == 1 { 100.0 * value } else { value };
            let series = &mut curves[k].1;
            match series.iter_mut().find(|(s, _)| s == name) {
                Some((_, points)) => points.push((points.len() as f64 + 1.0, value)),
                None => series.push((name.to_string(), vec![(1.0, value)])),
            }
        }
    }
    Ok(curves
        .into_iter()
        .filter(|(_, series)| !series.is_empty())
        .map(|(metric, series)| {
            let figure = Figure {
                title: format!("{metric} per phase"),
                x_label: "repetition (epoch)".into(),
                y_label: if metric == "accuracy" {
                    "accuracy (%)".into()
                } else {
                    metric.into()
                },
                series,
            };
            (metric.to_string(), figure)
        })
        .collect())
}

/// Makes the bundled DejaVu Sans the plots' font (no system fonts are needed).
fn register_font() -> Result<(), String> {
    static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the bundled font could not be loaded".to_string())
}

/// The x and y ranges of the finite points, widened where degenerate.
fn ranges(figure: &Figure) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let finite = || {
        figure
            .series
            .iter()
            .flat_map(|(_, p)| p)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let span = |lo: f64, hi: f64| {
        if !lo.is_finite() {
            0.0..1.0
        } else if hi > lo {
            let pad = 0.04 * (hi - lo);
            lo - pad..hi + pad
        } else {
            let pad = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
            lo - pad..hi + pad
        }
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in finite() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    (span(x0, x1), span(y0, y1))
}

/// Draws `figure` on `root`.
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, figure: &Figure) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(fail)?;
    let (xr, yr) = ranges(figure);
    let mut chart = ChartBuilder::on(&root)
        .caption(&figure.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(xr, yr)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc(figure.x_label.as_str())
        .y_desc(figure.y_label.as_str())
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(fail)?;
    for (k, (label, points)) in figure.series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        // Non-finite values (a blown-up run) break the line instead of the plot. Lines are one
        // pixel wide: plotters does not clip thicker vertical segments to the chart area.
        for segment in points.split(|(x, y)| !x.is_finite() || !y.is_finite()) {
            let drawn = chart
                .draw_series(LineSeries::new(segment.iter().copied(), color.stroke_width(1)))
                .map_err(fail)?;
            if std::ptr::eq(segment.as_ptr(), points.as_ptr()) {
                drawn
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
            }
        }
    }
    if figure.series.len() > 1 || figure.series.iter().any(|(l, _)| l != &figure.y_label) {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(fail)?;
    }
    root.present().map_err(fail)
}

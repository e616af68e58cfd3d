//! Datasets: loading `.npz` and `.csv` files, and streaming their samples into input and target
//! buffers, one batch of samples at a time, with seeded per-epoch shuffling.

use crate::rng::Rng;
use crate::{RunError, npy, zip};
use gle_ir::{DataSource, Dataset, Presentation};
use std::path::Path;

/// One field of one split: `rows` rows of `per_row` values.
#[derive(Clone, Debug)]
pub struct FieldData {
    /// Values per row.
    pub per_row: usize,
    /// Whether the field holds one integer class label per row.
    pub labels: bool,
    /// Row-major values.
    pub data: Vec<f64>,
}

/// A loaded dataset: fields of the training split and, if present, of the test split.
#[derive(Clone, Debug)]
pub struct LoadedDataset {
    /// The checked declaration.
    pub decl: Dataset,
    /// Training fields, in declaration order.
    pub train: Vec<FieldData>,
    /// Test fields, if every field names a test array.
    pub test: Option<Vec<FieldData>>,
}

impl LoadedDataset {
    /// Loads `decl` from its file, relative to `base`.
    pub fn load(decl: &Dataset, base: &Path) -> Result<Self, RunError> {
        let path = base.join(&decl.file);
        let at = |m: String| RunError::at(m, decl.span);
        let bytes = std::fs::read(&path).map_err(|e| at(format!("cannot read dataset `{}`: {e}", path.display())))?;
        let name = path.display().to_string();
        let (train, test) = if decl.file.ends_with(".csv") {
            let table = csv(&bytes, &name).map_err(at)?;
            let fields = decl
                .fields
                .iter()
                .map(|f| match f.source {
                    DataSource::Columns { start, end } => columns(&table, start, end, &name).map_err(at),
                    DataSource::Array { .. } => {
                        Err(at(format!("`{name}` is a CSV file: fields are `columns(start, end)`")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            (fields, None)
        } else {
            let members = zip::read(&bytes, &name).map_err(at)?;
            let array = |key: &str| -> Result<FieldData, RunError> {
                let member = format!("{key}.npy");
                let (_, contents) = members.iter().find(|(n, _)| *n == member).ok_or_else(|| {
                    let keys: Vec<String> = members
                        .iter()
                        .map(|(n, _)| n.trim_end_matches(".npy").to_string())
                        .collect();
                    at(format!("`{name}` has no array `{key}` (it has: {})", keys.join(", ")))
                })?;
                let a = npy::parse(contents, &format!("{name}:{member}")).map_err(at)?;
                let labels = a.shape.len() == 1;
                let rows = a.shape.first().copied().unwrap_or(0);
                if rows == 0 {
                    return Err(at(format!("array `{key}` of `{name}` is empty")));
                }
                if labels && a.data.iter().any(|v| v.fract() != 0.0 || *v < 0.0) {
                    return Err(at(format!(
                        "array `{key}` of `{name}` is one-dimensional but does not hold class labels (whole numbers ≥ 0)"
                    )));
                }
                Ok(FieldData {
                    per_row: a.data.len() / rows,
                    labels,
                    data: a.data,
                })
            };
            let mut train = Vec::new();
            let mut test = Vec::new();
            for f in &decl.fields {
                match &f.source {
                    DataSource::Array { train: t, test: v } => {
                        train.push(array(t)?);
                        if let Some(v) = v {
                            test.push(array(v)?);
                        }
                    }
                    DataSource::Columns { .. } => {
                        return Err(at(format!("`{name}` is an .npz archive: fields are `array(\"key\")`")));
                    }
                }
            }
            let has_test = test.len() == decl.fields.len() && !test.is_empty();
            (train, has_test.then_some(test))
        };
        let ds = LoadedDataset {
            decl: decl.clone(),
            train,
            test,
        };
        for split in [Some(&ds.train), ds.test.as_ref()].into_iter().flatten() {
            let rows: Vec<usize> = split.iter().map(|f| f.data.len() / f.per_row.max(1)).collect();
            if rows.windows(2).any(|w| w[0] != w[1]) {
                return Err(at(format!(
                    "the fields of dataset `{}` have different numbers of samples: {rows:?}",
                    decl.name
                )));
            }
        }
        Ok(ds)
    }

    /// Samples in a split.
    pub fn rows(&self, test: bool) -> usize {
        let split = if test {
            self.test.as_ref().unwrap_or(&self.train)
        } else {
            &self.train
        };
        split.first().map_or(0, |f| f.data.len() / f.per_row.max(1))
    }

    /// Steps one sample lasts when field `field` feeds an input `width` channels wide.
    pub fn steps_per_sample(&self, field: usize, width: usize) -> usize {
        match self.decl.present {
            Presentation::Hold => self.decl.steps_per_sample.unwrap_or(1),
            Presentation::Stream => {
                (self.train[field].per_row / width.max(1)) * self.decl.steps_per_sample.unwrap_or(1)
            }
        }
    }
}

fn csv(bytes: &[u8], name: &str) -> Result<Vec<Vec<f64>>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("`{name}` is not UTF-8 text"))?;
    let mut rows = Vec::new();
    for (k, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Result<Vec<f64>, _> = line.split(',').map(|c| c.trim().parse::<f64>()).collect();
        match cells {
            Ok(r) => rows.push(r),
            Err(_) if k == 0 => {} // a header line
            Err(_) => return Err(format!("`{name}` line {}: not a list of numbers", k + 1)),
        }
    }
    if rows.is_empty() {
        return Err(format!("`{name}` holds no rows of numbers"));
    }
    Ok(rows)
}

fn columns(table: &[Vec<f64>], start: usize, end: usize, name: &str) -> Result<FieldData, String> {
    let mut data = Vec::with_capacity(table.len() * (end - start));
    for (k, row) in table.iter().enumerate() {
        let cells = row
            .get(start..end)
            .ok_or_else(|| format!("`{name}` row {}: has {} columns, needs {end}", k + 1, row.len()))?;
        data.extend_from_slice(cells);
    }
    Ok(FieldData {
        per_row: end - start,
        labels: false,
        data,
    })
}

/// Which samples each batch row presents during a data phase.
#[derive(Clone, Debug)]
pub struct Feed {
    /// Dataset index.
    pub dataset: usize,
    /// Test split?
    pub test: bool,
    /// Sample order of this pass.
    pub order: Vec<usize>,
    /// Steps per sample.
    pub steps_per_sample: usize,
    /// Batch rows.
    pub batch: usize,
}

impl Feed {
    /// A pass over a split; the training split is shuffled with `seed` and `epoch` when the
    /// dataset says `shuffle`.
    pub fn new(
        ds: &LoadedDataset,
        index: usize,
        test: bool,
        batch: usize,
        steps_per_sample: usize,
        epoch: u64,
    ) -> Self {
        let rows = ds.rows(test);
        let mut order: Vec<usize> = (0..rows).collect();
        if let (Some(seed), false) = (ds.decl.shuffle_seed, test) {
            let mut rng = Rng::new(seed, 0x5_0000 + epoch);
            for i in (1..rows).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        }
        Feed {
            dataset: index,
            test,
            order,
            steps_per_sample,
            batch,
        }
    }

    /// Steps of one pass: whole batches only.
    pub fn steps(&self) -> usize {
        (self.order.len() / self.batch) * self.steps_per_sample
    }

    /// The sample batch row `b` presents at step `n` of the pass.
    pub fn sample(&self, n: usize, b: usize) -> usize {
        self.order[(n / self.steps_per_sample) * self.batch + b]
    }
}

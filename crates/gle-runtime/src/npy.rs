//! Reading and writing `.npy` arrays (little-endian `f8`, `f4`, `i8`, `i4`; C order).

use std::io::Write;
use std::path::Path;

/// An array read from an `.npy` file, converted to f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: Vec<f64>,
}

/// Parses `.npy` bytes. `what` names the source in errors.
pub fn parse(bytes: &[u8], what: &str) -> Result<Array, String> {
    let bad = |why: &str| format!("{what}: not a valid .npy array ({why})");
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown format version")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(
            header[i + key.len() + 2..]
                .trim_start()
                .trim_start_matches(':')
                .trim_start(),
        )
    };
    let descr = field("descr").ok_or_else(|| bad("no dtype"))?;
    let descr = descr.split('\'').nth(1).ok_or_else(|| bad("unreadable dtype"))?;
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err(bad("Fortran order is not supported; save with C order"));
    }
    let shape_text = field("shape").ok_or_else(|| bad("no shape"))?;
    let inner = shape_text.trim_start_matches('(');
    let inner = &inner[..inner.find(')').ok_or_else(|| bad("unreadable shape"))?];
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("unreadable shape")))
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    let (size, conv): (usize, fn(&[u8]) -> f64) = match descr {
        "<f8" => (8, |b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
        "<f4" => (4, |b| f32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as f64),
        "<i8" => (8, |b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64),
        "<i4" => (4, |b| i32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as f64),
        other => {
            return Err(bad(&format!(
                "dtype {other} is not supported (use float64, float32, int64 or int32)"
            )));
        }
    };
    if body.len() < count * size {
        return Err(bad(&format!(
            "expected {count} values of {size} bytes, found {} bytes",
            body.len()
        )));
    }
    let data = body.chunks_exact(size).take(count).map(conv).collect();
    Ok(Array { shape, data })
}

/// Reads an `.npy` file.
pub fn read(path: &Path) -> Result<Array, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    parse(&bytes, &path.display().to_string())
}

/// The bytes of an `.npy` file holding `data` (f64, C order) with `shape`.
pub fn encode(shape: &[usize], data: &[f64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that the data starts at a multiple of 64 bytes, ending the header with a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes an `.npy` file atomically: to a temporary file first, renamed into place when complete,
/// so that a failed run never leaves a truncated array that looks complete.
pub fn write(path: &Path, shape: &[usize], data: &[f64]) -> Result<(), String> {
    let tmp = path.with_extension("npy.partial");
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode(shape, data))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{}`: {e}", path.display())
    })
}

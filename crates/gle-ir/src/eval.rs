//! Constant evaluation of expressions written where a number, list or matrix is expected.

use crate::builtins::Builtin;
use crate::diag;
use gle_syntax::ast::{BinOp, Expr, ExprKind};
use gle_syntax::{Diagnostic, Span};

/// A constant value: a number or a (possibly nested) list.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number.
    Num(f64),
    /// A list; nested lists are matrices (rows).
    List(Vec<Value>),
}

/// Looks up names during constant evaluation.
pub trait NameLookup {
    /// The value of `name`, `None` if it is not a constant here, or an error explaining why it
    /// cannot be used.
    fn lookup(&self, name: &str, span: Span) -> Result<Option<f64>, Diagnostic>;
    /// An error for a name that is not a constant (unknown, or of another kind).
    fn not_constant(&self, name: &str, span: Span) -> Diagnostic;
}

/// Evaluates `expr` to a constant value.
pub fn eval(expr: &Expr, names: &dyn NameLookup) -> Result<Value, Diagnostic> {
    let num = |e: &Expr| eval_num(e, names);
    Ok(match &expr.node {
        ExprKind::Number(v) => Value::Num(*v),
        ExprKind::Str(_) => {
            return Err(diag::expected_number(expr.span, "a string"));
        }
        ExprKind::Path(parts) => {
            if parts.len() != 1 {
                let full: Vec<&str> = parts.iter().map(|p| p.node.as_str()).collect();
                return Err(names.not_constant(&full.join("."), expr.span));
            }
            let name = &parts[0].node;
            if name == "pi" {
                return Ok(Value::Num(std::f64::consts::PI));
            }
            match names.lookup(name, expr.span)? {
                Some(v) => Value::Num(v),
                None => return Err(names.not_constant(name, expr.span)),
            }
        }
        ExprKind::List(items) => Value::List(items.iter().map(|e| eval(e, names)).collect::<Result<_, _>>()?),
        ExprKind::Neg(inner) => map_num(eval(inner, names)?, &|x| -x),
        ExprKind::Binary { op, lhs, rhs } => {
            let a = eval(lhs, names)?;
            let b = eval(rhs, names)?;
            binary(*op, a, b, expr.span)?
        }
        ExprKind::Call { func, args } => {
            let name = func.node.as_str();
            match name {
                "linspace" => {
                    diag::expect_args(func, args, 3)?;
                    let (a, b) = (num(&args[0].value)?, num(&args[1].value)?);
                    let n = eval_count(&args[2].value, names, "a point count")?;
                    if n > MAX_LIST_POINTS {
                        return Err(Diagnostic::error(
                            "E0501",
                            format!("`linspace` builds at most {MAX_LIST_POINTS} points"),
                            args[2].value.span,
                        )
                        .with_label(format!("this asks for {n}")));
                    }
                    let step = if n > 1 { (b - a) / (n - 1) as f64 } else { 0.0 };
                    Value::List((0..n).map(|i| Value::Num(a + step * i as f64)).collect())
                }
                "round" => {
                    diag::expect_args(func, args, 2)?;
                    let digits = eval_num(&args[1].value, names)?;
                    let scale = 10f64.powi(digits.clamp(0.0, 15.0) as i32);
                    map_num(eval(&args[0].value, names)?, &|x| (x * scale).round() / scale)
                }
                _ => match Builtin::from_name(name).filter(|b| b.is_elementwise()) {
                    Some(b) => {
                        let sig = b.signature();
                        diag::expect_args(func, args, sig.params.len())?;
                        let vals: Vec<f64> = args.iter().map(|a| num(&a.value)).collect::<Result<_, _>>()?;
                        Value::Num(apply(b, &vals))
                    }
                    None => {
                        return Err(Diagnostic::error(
                            "E0414",
                            format!("`{name}(…)` is not a constant expression"),
                            expr.span,
                        )
                        .with_label("expected a number here"));
                    }
                },
            }
        }
        ExprKind::D { .. } | ExprKind::I { .. } => {
            return Err(Diagnostic::error(
                "E0415",
                "temporal operators are only allowed inside a neuron type",
                expr.span,
            )
            .with_label("expected a number here"));
        }
    })
}

fn map_num(v: Value, f: &dyn Fn(f64) -> f64) -> Value {
    match v {
        Value::Num(x) => Value::Num(f(x)),
        Value::List(items) => Value::List(items.into_iter().map(|i| map_num(i, f)).collect()),
    }
}

fn binary(op: BinOp, a: Value, b: Value, span: Span) -> Result<Value, Diagnostic> {
    Ok(match (a, b) {
        (Value::Num(x), Value::Num(y)) => Value::Num(num_op(op, x, y)),
        (Value::List(xs), Value::Num(y)) => Value::List(
            xs.into_iter()
                .map(|x| binary(op, x, Value::Num(y), span))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Num(x), Value::List(ys)) => Value::List(
            ys.into_iter()
                .map(|y| binary(op, Value::Num(x), y, span))
                .collect::<Result<_, _>>()?,
        ),
        (Value::List(xs), Value::List(ys)) => {
            if xs.len() != ys.len() {
                return Err(Diagnostic::error(
                    "E0306",
                    format!("lists of different lengths ({} and {})", xs.len(), ys.len()),
                    span,
                )
                .with_label("elementwise operation on lists of different lengths"));
            }
            Value::List(
                xs.into_iter()
                    .zip(ys)
                    .map(|(x, y)| binary(op, x, y, span))
                    .collect::<Result<_, _>>()?,
            )
        }
    })
}

/// Applies a binary operator to two numbers.
pub fn num_op(op: BinOp, x: f64, y: f64) -> f64 {
    match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Pow => x.powf(y),
    }
}

/// Applies an elementwise built-in to numbers: constant folding at check time, and the reference
/// semantics that every backend runs (through `gle_derive::sym::apply`). Inlined, so that a
/// caller naming one built-in (each JIT shim) compiles to that built-in's arm alone.
#[inline]
pub fn apply(b: Builtin, a: &[f64]) -> f64 {
    let x = a.first().copied().unwrap_or(0.0);
    match b {
        Builtin::Linear => x,
        Builtin::Tanh => crate::math::tanh(x),
        Builtin::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Builtin::HardSigmoid => x.clamp(0.0, 1.0),
        Builtin::Relu => crate::math::max(x, 0.0),
        Builtin::Softplus => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        Builtin::HardTanh => x.clamp(-1.0, 1.0),
        Builtin::Exp => x.exp(),
        Builtin::Log => x.ln(),
        Builtin::Log1p => x.ln_1p(),
        Builtin::Sqrt => x.sqrt(),
        Builtin::Abs => x.abs(),
        Builtin::Sin => x.sin(),
        Builtin::Cos => x.cos(),
        Builtin::Min => crate::math::min(x, a[1]),
        Builtin::Max => crate::math::max(x, a[1]),
        Builtin::Clamp => crate::math::min(crate::math::max(x, a[1]), a[2]),
        Builtin::Step => {
            if x >= 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Builtin::Sawtooth => 2.0 * (x - x.floor()) - 1.0,
        Builtin::Square => {
            if x - x.floor() < 0.5 {
                1.0
            } else {
                -1.0
            }
        }
        _ => f64::NAN,
    }
}

/// Evaluates `expr` to a finite number.
pub fn eval_num(expr: &Expr, names: &dyn NameLookup) -> Result<f64, Diagnostic> {
    match eval(expr, names)? {
        Value::Num(v) if v.is_finite() => Ok(v),
        Value::Num(_) => Err(
            Diagnostic::error("E0509", "this expression is not a finite number", expr.span)
                .with_label("evaluates to infinity or NaN"),
        ),
        Value::List(_) => Err(diag::expected_number(expr.span, "a list")),
    }
}

/// The longest list `linspace` builds: lists hold values written per neuron or channel, kept
/// in the IR, and a count mistyped by a few zeros would otherwise exhaust memory while checking.
pub const MAX_LIST_POINTS: usize = 10_000_000;

/// Evaluates `expr` to a whole number ≥ 1 (a size or count).
pub fn eval_count(expr: &Expr, names: &dyn NameLookup, what: &str) -> Result<usize, Diagnostic> {
    let v = eval_num(expr, names)?;
    if v.fract() != 0.0 {
        return Err(
            Diagnostic::error("E0506", format!("{what} must be a whole number"), expr.span)
                .with_label(format!("this is {v}")),
        );
    }
    if v < 1.0 {
        return Err(
            Diagnostic::error("E0501", format!("{what} must be at least 1"), expr.span)
                .with_label(format!("this is {v}")),
        );
    }
    if v > 1e12 {
        return Err(
            Diagnostic::error("E0501", format!("{what} is too large"), expr.span).with_label(format!("this is {v}"))
        );
    }
    Ok(v as usize)
}

/// Flattens a value into numbers with its shape: `[]` for a number, `[n]` for a list, `[r, c]`
/// for a list of equal-length lists. Ragged lists are an error.
pub fn flatten(value: &Value, span: Span) -> Result<(Vec<usize>, Vec<f64>), Diagnostic> {
    match value {
        Value::Num(v) => Ok((vec![], vec![*v])),
        Value::List(items) => {
            let mut shape: Option<Vec<usize>> = None;
            let mut data = Vec::new();
            for item in items {
                let (s, d) = flatten(item, span)?;
                if shape.as_ref().is_some_and(|prev| *prev != s) {
                    return Err(Diagnostic::error("E0305", "ragged matrix literal", span)
                        .with_label("rows have different lengths"));
                }
                shape = Some(s);
                data.extend(d);
            }
            let mut full = vec![items.len()];
            full.extend(shape.unwrap_or_default());
            if full.len() > 2 {
                return Err(
                    Diagnostic::error("E0305", "lists nest at most two deep (a matrix)", span)
                        .with_label("three or more levels of brackets"),
                );
            }
            Ok((full, data))
        }
    }
}

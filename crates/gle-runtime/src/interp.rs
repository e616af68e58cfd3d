//! The reference interpreter: executes a step program's statements on f64 buffers. It defines
//! the meaning of the step program; every other backend is tested against it.

use gle_derive::program::{Layout, Program, Stmt};
use gle_derive::sym::{Fun, Graph, Id, Leaf, Node, apply};

/// One instruction of a compiled elementwise expression; operands index earlier results.
#[derive(Clone, Debug)]
enum Ins {
    Num(f64),
    Batch(usize),
    Shared(usize),
    Const(usize),
    Dt,
    Time,
    Add(u32, u32),
    Mul(u32, u32),
    Div(u32, u32),
    Pow(u32, u32),
    Neg(u32),
    Call(Fun, Vec<u32>),
}

/// A `Map` statement compiled to a flat instruction list.
#[derive(Clone, Debug)]
pub struct Tape {
    ins: Vec<Ins>,
    outs: Vec<(usize, u32)>,
    len: usize,
}

impl Tape {
    /// Compiles the expressions of a `Map` statement.
    pub fn new(graph: &Graph, program: &Program, len: usize, outs: &[(usize, Id)]) -> Result<Tape, String> {
        let roots: Vec<Id> = outs.iter().map(|o| o.1).collect();
        let order = graph.reachable(&roots);
        let mut reg = std::collections::HashMap::with_capacity(order.len());
        let mut ins = Vec::with_capacity(order.len());
        for id in order {
            let r = |x: &Id| reg[x];
            let i = match graph.node(id) {
                Node::Num(b) => Ins::Num(f64::from_bits(*b)),
                Node::Leaf(Leaf::Buf(b)) => match program.buffers[*b].layout {
                    Layout::Batch => Ins::Batch(*b),
                    Layout::Shared => Ins::Shared(*b),
                },
                Node::Leaf(Leaf::Const(c)) => Ins::Const(*c),
                Node::Leaf(Leaf::Dt) => Ins::Dt,
                Node::Leaf(Leaf::Time) => Ins::Time,
                Node::Leaf(other) => {
                    return Err(format!("internal error: unbound symbol {other:?} in the step program"));
                }
                Node::Add(a, b) => Ins::Add(r(a), r(b)),
                Node::Mul(a, b) => Ins::Mul(r(a), r(b)),
                Node::Div(a, b) => Ins::Div(r(a), r(b)),
                Node::Pow(a, b) => Ins::Pow(r(a), r(b)),
                Node::Neg(a) => Ins::Neg(r(a)),
                Node::Call(f, args) => Ins::Call(*f, args.iter().map(r).collect()),
            };
            reg.insert(id, ins.len() as u32);
            ins.push(i);
        }
        let outs = outs.iter().map(|(b, id)| (*b, reg[id])).collect();
        Ok(Tape { ins, outs, len })
    }
}

/// Buffers and the values every expression can read.
pub struct Machine<'a> {
    /// Buffer contents: `batch × len` for batch buffers, `len` for shared ones.
    pub data: &'a mut [Vec<f64>],
    /// Buffer lengths per row.
    pub lens: &'a [usize],
    /// Current values of the model's constants.
    pub consts: &'a [f64],
    /// Time step.
    pub dt: f64,
    /// Time at the start of the step.
    pub time: f64,
    /// Batch size.
    pub batch: usize,
}

impl Machine<'_> {
    /// Runs a compiled `Map`, one instruction at a time over all `batch × len` elements (the
    /// same arithmetic per element as evaluating each element alone, with far less dispatch).
    pub fn map(&mut self, tape: &Tape, scratch: &mut Vec<f64>) {
        let n = tape.len;
        let m = self.batch * n;
        scratch.resize(tape.ins.len() * m, 0.0);
        for (k, ins) in tape.ins.iter().enumerate() {
            let (done, rest) = scratch.split_at_mut(k * m);
            let out = &mut rest[..m];
            let reg = |r: &u32| &done[*r as usize * m..(*r as usize + 1) * m];
            match ins {
                Ins::Num(v) => out.fill(*v),
                Ins::Const(c) => out.fill(self.consts[*c]),
                Ins::Dt => out.fill(self.dt),
                Ins::Time => out.fill(self.time),
                Ins::Batch(buf) => out.copy_from_slice(&self.data[*buf][..m]),
                Ins::Shared(buf) => {
                    for row in out.chunks_exact_mut(n) {
                        row.copy_from_slice(&self.data[*buf][..n]);
                    }
                }
                Ins::Add(x, y) => out
                    .iter_mut()
                    .zip(reg(x).iter().zip(reg(y)))
                    .for_each(|(o, (a, b))| *o = a + b),
                Ins::Mul(x, y) => out
                    .iter_mut()
                    .zip(reg(x).iter().zip(reg(y)))
                    .for_each(|(o, (a, b))| *o = a * b),
                Ins::Div(x, y) => out
                    .iter_mut()
                    .zip(reg(x).iter().zip(reg(y)))
                    .for_each(|(o, (a, b))| *o = a / b),
                Ins::Pow(x, y) => out
                    .iter_mut()
                    .zip(reg(x).iter().zip(reg(y)))
                    .for_each(|(o, (a, b))| *o = a.powf(*b)),
                Ins::Neg(x) => out.iter_mut().zip(reg(x)).for_each(|(o, a)| *o = -a),
                Ins::Call(f, args) => {
                    let regs: Vec<&[f64]> = args.iter().map(reg).collect();
                    for (e, o) in out.iter_mut().enumerate() {
                        let xs: [f64; 3] = std::array::from_fn(|j| regs.get(j).map_or(0.0, |r| r[e]));
                        *o = apply(*f, &xs[..regs.len()]);
                    }
                }
            }
        }
        for (buf, reg) in &tape.outs {
            let r = *reg as usize;
            self.data[*buf][..m].copy_from_slice(&scratch[r * m..(r + 1) * m]);
        }
    }
}

/// Runs a non-`Map` statement on `data` (buffers of `batch` rows). The dense products' sums
/// add each product with one rounding (`f64::mul_add`, IEEE's fused multiply-add), in the
/// order their comments give; every backend computes them so.
pub fn tensor(data: &mut [Vec<f64>], batch: usize, stmt: &Stmt) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU was just found to support FMA, the one feature `tensor_fma` is
        // compiled for.
        #[allow(unsafe_code)]
        return unsafe { tensor_fma(data, batch, stmt) };
    }
    tensor_any_cpu(data, batch, stmt);
}

/// [`tensor`] compiled for FMA: `mul_add` is one instruction there, elsewhere a call of libm's
/// `fma` (the same result, computed in software where the CPU lacks it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn tensor_fma(data: &mut [Vec<f64>], batch: usize, stmt: &Stmt) {
    tensor_any_cpu(data, batch, stmt);
}

/// [`tensor`] for any CPU; inlined into [`tensor_fma`] so that it is compiled for FMA there.
#[inline(always)]
fn tensor_any_cpu(data: &mut [Vec<f64>], batch: usize, stmt: &Stmt) {
    match *stmt {
        Stmt::MatVec {
            out,
            w,
            rows,
            cols,
            x,
            accumulate,
        } => {
            // One in-order sum per row; four rows at a time share the pass over x and keep four
            // independent additions in flight (the same sums, so the same bits).
            let mut sums = std::mem::take(&mut data[out]);
            let (wm, xm) = (&data[w], &data[x]);
            for b in 0..batch {
                let xb = &xm[b * cols..(b + 1) * cols];
                let ob = &mut sums[b * rows..(b + 1) * rows];
                let mut i = 0;
                while i + 4 <= rows {
                    let r = |k: usize| &wm[(i + k) * cols..(i + k + 1) * cols];
                    let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                    let mut acc = [0.0; 4];
                    for (j, xj) in xb.iter().enumerate() {
                        acc[0] = r0[j].mul_add(*xj, acc[0]);
                        acc[1] = r1[j].mul_add(*xj, acc[1]);
                        acc[2] = r2[j].mul_add(*xj, acc[2]);
                        acc[3] = r3[j].mul_add(*xj, acc[3]);
                    }
                    for (k, a) in acc.into_iter().enumerate() {
                        ob[i + k] = if accumulate { ob[i + k] + a } else { a };
                    }
                    i += 4;
                }
                for i in i..rows {
                    let row = &wm[i * cols..(i + 1) * cols];
                    let acc = row.iter().zip(xb).fold(0.0, |acc, (wij, xj)| wij.mul_add(*xj, acc));
                    ob[i] = if accumulate { ob[i] + acc } else { acc };
                }
            }
            data[out] = sums;
        }
        Stmt::MatTVec { out, w, rows, cols, x } => {
            // out[b][j] = Σ_i W[i][j]·x[b][i], accumulated over i in order, row by row of W.
            for b in 0..batch {
                let mut acc = vec![0.0; cols];
                for i in 0..rows {
                    let xi = data[x][b * rows + i];
                    let wrow = &data[w][i * cols..(i + 1) * cols];
                    for (a, wij) in acc.iter_mut().zip(wrow) {
                        *a = wij.mul_add(xi, *a);
                    }
                }
                data[out][b * cols..(b + 1) * cols].copy_from_slice(&acc);
            }
        }
        Stmt::Outer {
            grad,
            rows,
            cols,
            a,
            x,
            negate,
        } => {
            // Σ_b a[b][i]·x[b][j], accumulated over b in order in the gradient buffer itself:
            // the first batch row starts the sums from 0.0, the last divides by the batch size.
            let n = batch as f64;
            let mut g = std::mem::take(&mut data[grad]);
            for b in 0..batch {
                let xb = &data[x][b * cols..(b + 1) * cols];
                for i in 0..rows {
                    let ai = data[a][b * rows + i];
                    let row = g[i * cols..(i + 1) * cols].iter_mut().zip(xb);
                    match (b == 0, b + 1 == batch) {
                        (true, false) => row.for_each(|(s, xj)| *s = ai.mul_add(*xj, 0.0)),
                        (false, false) => row.for_each(|(s, xj)| *s = ai.mul_add(*xj, *s)),
                        (first, true) => row.for_each(|(s, xj)| {
                            let start = if first { 0.0 } else { *s };
                            let mean = ai.mul_add(*xj, start) / n;
                            *s = if negate { -mean } else { mean };
                        }),
                    }
                }
            }
            data[grad] = g;
        }
        Stmt::Mean { grad, len, x, negate } => {
            for i in 0..len {
                let mut acc = 0.0;
                for b in 0..batch {
                    acc += data[x][b * len + i];
                }
                let mean = acc / batch as f64;
                data[grad][i] = if negate { -mean } else { mean };
            }
        }
        Stmt::Softmax { out, x, len } => {
            for b in 0..batch {
                let row = &data[x][b * len..(b + 1) * len];
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for (i, e) in exps.iter().enumerate() {
                    data[out][b * len + i] = e / total;
                }
            }
        }
        Stmt::Map { .. } => {}
    }
}

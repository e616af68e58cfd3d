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
    /// Runs a compiled `Map`.
    pub fn map(&mut self, tape: &Tape, scratch: &mut Vec<f64>) {
        scratch.resize(tape.ins.len(), 0.0);
        let mut results: Vec<f64> = vec![0.0; tape.outs.len()];
        for b in 0..self.batch {
            for i in 0..tape.len {
                for (k, ins) in tape.ins.iter().enumerate() {
                    let v = match ins {
                        Ins::Num(v) => *v,
                        Ins::Batch(buf) => self.data[*buf][b * self.lens[*buf] + i],
                        Ins::Shared(buf) => self.data[*buf][i],
                        Ins::Const(c) => self.consts[*c],
                        Ins::Dt => self.dt,
                        Ins::Time => self.time,
                        Ins::Add(x, y) => scratch[*x as usize] + scratch[*y as usize],
                        Ins::Mul(x, y) => scratch[*x as usize] * scratch[*y as usize],
                        Ins::Div(x, y) => scratch[*x as usize] / scratch[*y as usize],
                        Ins::Pow(x, y) => scratch[*x as usize].powf(scratch[*y as usize]),
                        Ins::Neg(x) => -scratch[*x as usize],
                        Ins::Call(f, args) => {
                            let xs: [f64; 3] =
                                std::array::from_fn(|j| args.get(j).map_or(0.0, |a| scratch[*a as usize]));
                            apply(*f, &xs[..args.len()])
                        }
                    };
                    scratch[k] = v;
                }
                for (o, (_, reg)) in tape.outs.iter().enumerate() {
                    results[o] = scratch[*reg as usize];
                }
                for (o, (buf, _)) in tape.outs.iter().enumerate() {
                    let len = self.lens[*buf];
                    self.data[*buf][b * len + i] = results[o];
                }
            }
        }
    }

    /// Runs a non-`Map` statement.
    pub fn tensor(&mut self, stmt: &Stmt) {
        let batch = self.batch;
        match *stmt {
            Stmt::MatVec {
                out,
                w,
                rows,
                cols,
                x,
                accumulate,
            } => {
                for b in 0..batch {
                    for i in 0..rows {
                        let mut acc = 0.0;
                        for j in 0..cols {
                            acc += self.data[w][i * cols + j] * self.data[x][b * cols + j];
                        }
                        let o = &mut self.data[out][b * rows + i];
                        *o = if accumulate { *o + acc } else { acc };
                    }
                }
            }
            Stmt::MatTVec { out, w, rows, cols, x } => {
                for b in 0..batch {
                    for j in 0..cols {
                        let mut acc = 0.0;
                        for i in 0..rows {
                            acc += self.data[w][i * cols + j] * self.data[x][b * rows + i];
                        }
                        self.data[out][b * cols + j] = acc;
                    }
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
                for i in 0..rows {
                    for j in 0..cols {
                        let mut acc = 0.0;
                        for b in 0..batch {
                            acc += self.data[a][b * rows + i] * self.data[x][b * cols + j];
                        }
                        let mean = acc / batch as f64;
                        self.data[grad][i * cols + j] = if negate { -mean } else { mean };
                    }
                }
            }
            Stmt::Mean { grad, len, x, negate } => {
                for i in 0..len {
                    let mut acc = 0.0;
                    for b in 0..batch {
                        acc += self.data[x][b * len + i];
                    }
                    let mean = acc / batch as f64;
                    self.data[grad][i] = if negate { -mean } else { mean };
                }
            }
            Stmt::Map { .. } => {}
        }
    }
}

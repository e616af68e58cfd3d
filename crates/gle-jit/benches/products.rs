//! The products the generated code calls (`gle_jit::products`), alone, on MNIST-1D 15k's hidden
//! shapes at batch 100 and batch 1 (53 × 53 weights): every build this CPU runs, throughput in
//! multiply-adds per second (for the fused pass of batch 1 — `W·x`, `Wᵀe` and the gradient —
//! in weights per second).
//! Each multiply-add is one fused instruction (in the AVX and AVX-512 builds); BENCHMARKS.md
//! records what this machine's vector pipes reach.
#![allow(unsafe_code, reason = "the products take raw pointers")]

use criterion::{Criterion, Throughput, criterion_main};
use gle_jit::products::{self, MEAN, STORE};
use std::hint::black_box;
use std::time::Duration;

const N: usize = 53;

fn values(n: usize) -> Vec<f64> {
    (0..n).map(|k| ((k * 7919) % 1000) as f64 / 1000.0 - 0.5).collect()
}

fn benches(c: &mut Criterion) {
    products_at(c, 100);
    products_at(c, 1);
}

/// The three products at batch size `batch`.
fn products_at(c: &mut Criterion, batch: usize) {
    let mut group = c.benchmark_group(format!("products_53x53_batch{batch}"));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    group.throughput(Throughput::Elements((N * N * batch) as u64));
    let (w, x, e) = (values(N * N), values(batch * N), values(batch * N));
    let mut out = vec![0.0; batch * N];
    let mut grad = vec![0.0; N * N];
    let mut scratch = vec![0.0; products::MAT_VEC_SCRATCH_PER_COLUMN * N];
    let n = N as i64;
    let mut w_fused = w.clone();
    let mut d = vec![0.0; N];
    for products::Build {
        name: build,
        column_sums,
        mat_vec,
        fused_rows,
    } in products::builds()
    {
        if batch == 1 {
            group.bench_function(format!("{build}/fused"), |b| {
                b.iter(|| {
                    // SAFETY: as above (out = W·x, d = Wᵀe, grad = e·xᵀ, one pass over W).
                    unsafe {
                        fused_rows(
                            w_fused.as_mut_ptr(),
                            x.as_ptr(),
                            out.as_mut_ptr(),
                            e.as_ptr(),
                            d.as_mut_ptr(),
                            grad.as_mut_ptr(),
                            n,
                            0,
                            n,
                            0,
                            MEAN,
                            1,
                            0,
                            1.0,
                            0.0,
                        )
                    };
                    black_box((&out, &d, &grad));
                })
            });
        }
        group.bench_function(format!("{build}/w_x"), |b| {
            b.iter(|| {
                // SAFETY: every address lies in the vectors above.
                unsafe {
                    mat_vec(
                        w.as_ptr(),
                        x.as_ptr(),
                        out.as_mut_ptr(),
                        n,
                        n,
                        0,
                        batch as i64,
                        0,
                        scratch.as_mut_ptr(),
                    )
                };
                black_box(&out);
            })
        });
        group.bench_function(format!("{build}/wt_e"), |b| {
            b.iter(|| {
                // SAFETY: as above (out[b][j] = Σ_i W[i][j]·e[b][i]).
                unsafe {
                    column_sums(
                        w.as_ptr(),
                        n,
                        e.as_ptr(),
                        1,
                        n,
                        out.as_mut_ptr(),
                        n,
                        n,
                        n,
                        0,
                        batch as i64,
                        STORE,
                        0,
                        0.0,
                        0.0,
                    )
                };
                black_box(&out);
            })
        });
        group.bench_function(format!("{build}/e_rt"), |b| {
            b.iter(|| {
                // SAFETY: as above (grad[i][j] = Σ_b e[b][i]·x[b][j] / batch).
                unsafe {
                    column_sums(
                        x.as_ptr(),
                        n,
                        e.as_ptr(),
                        n,
                        1,
                        grad.as_mut_ptr(),
                        n,
                        batch as i64,
                        n,
                        0,
                        n,
                        MEAN,
                        0,
                        batch as f64,
                        0.0,
                    )
                };
                black_box(&grad);
            })
        });
    }
    group.finish();
}

mod group {
    #![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]
    criterion::criterion_group!(benches, super::benches);
}

criterion_main!(group::benches);

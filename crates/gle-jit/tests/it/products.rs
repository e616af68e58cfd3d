//! The compiled products (`gle_jit::products`): every build gives, bit for bit, the sums
//! written out the plain way — from 0.0, in order, each term added by one fused multiply-add —
//! on every shape of strip, tail, row block and batch block.
#![allow(unsafe_code)]

use gle_jit::products::{self, MEAN, NO_LEARNING, SGD_STEP, STORE};

/// Values of mixed signs and magnitudes (so that the order of additions shows in the bits).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            (unit - 0.5) * 10f64.powi((state % 7) as i32 - 3)
        })
        .collect()
}

#[test]
fn column_sums_equal_the_plain_sums_in_every_build() {
    let mut checked = 0;
    for products::Build {
        name: build,
        column_sums,
        ..
    } in products::builds()
    {
        for cols in 1..=37 {
            for terms in [1, 2, 5] {
                for outputs in 1..=7 {
                    // A mean over one batch row divides by 1.0; others by the batch size.
                    let finishes = [
                        (STORE, false, 1.0),
                        (MEAN, false, 1.0),
                        (MEAN, true, 1.0),
                        (SGD_STEP, true, 1.0),
                    ];
                    let divided = finishes.map(|(finish, negate, _)| (finish, negate, terms as f64 + 0.5));
                    for (finish, negate, count) in finishes.into_iter().chain(divided) {
                        // Outputs `first..outputs`, laid out as e·rᵀ lays them out: src [terms][cols],
                        // scales [terms][outputs], dst [outputs][cols] (with a margin that must
                        // stay untouched).
                        let first = outputs % 2;
                        let src = values(terms * cols, (cols * 131 + terms * 7 + outputs) as u64);
                        let scales = values(terms * outputs, (cols + 3 * terms + 17 * outputs) as u64);
                        let start = values(outputs * cols + 3, 99);
                        let rate = 0.037;
                        let mut expected = start.clone();
                        for o in first..outputs {
                            for j in 0..cols {
                                let mut sum = 0.0;
                                for k in 0..terms {
                                    sum = src[k * cols + j].mul_add(scales[k * outputs + o], sum);
                                }
                                let at = o * cols + j;
                                let mean = if negate { -(sum / count) } else { sum / count };
                                expected[at] = match finish {
                                    STORE => sum,
                                    MEAN => mean,
                                    _ => start[at] - rate * mean,
                                };
                            }
                        }
                        let mut dst = start.clone();
                        // SAFETY: every address the arguments describe lies in the vectors.
                        unsafe {
                            column_sums(
                                src.as_ptr(),
                                cols as i64,
                                scales.as_ptr(),
                                outputs as i64,
                                1,
                                dst.as_mut_ptr(),
                                cols as i64,
                                terms as i64,
                                cols as i64,
                                first as i64,
                                outputs as i64,
                                finish,
                                i64::from(negate),
                                count,
                                rate,
                            )
                        };
                        let same = dst.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{build}: cols {cols}, terms {terms}, outputs {first}..{outputs}, finish {finish}, count {count}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 37 * 3 * 7 * 8);
}

#[test]
fn mat_vec_equals_the_plain_sums_in_every_build() {
    for products::Build {
        name: build, mat_vec, ..
    } in products::builds()
    {
        // Batch sizes that end with every kind of block (two vectors, one, a quad, lone rows).
        for batch in 1..=41 {
            // Row counts that end the lane groups of a lone batch row at every tail length.
            for rows in [1, 3, 4, 5, 9, 12, 13, 16, 17, 29, 53] {
                for cols in [1, 2, 7] {
                    for accumulate in [false, true] {
                        // Batch rows 1..batch (the first stays untouched).
                        let w = values(rows * cols, (batch * 5 + rows * 11 + cols) as u64);
                        let x = values(batch * cols, (batch + rows + 13 * cols) as u64);
                        let start = values(batch * rows, 7);
                        let mut expected = start.clone();
                        for b in 1..batch {
                            for i in 0..rows {
                                let mut sum = 0.0;
                                for j in 0..cols {
                                    sum = w[i * cols + j].mul_add(x[b * cols + j], sum);
                                }
                                let at = b * rows + i;
                                expected[at] = if accumulate { start[at] + sum } else { sum };
                            }
                        }
                        let mut out = start.clone();
                        let mut scratch = vec![0.0; products::MAT_VEC_SCRATCH_PER_COLUMN * cols];
                        // SAFETY: every address the arguments describe lies in the vectors.
                        unsafe {
                            mat_vec(
                                w.as_ptr(),
                                x.as_ptr(),
                                out.as_mut_ptr(),
                                rows as i64,
                                cols as i64,
                                1,
                                batch as i64,
                                i64::from(accumulate),
                                scratch.as_mut_ptr(),
                            )
                        };
                        let same = out.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{build}: batch {batch}, rows {rows}, cols {cols}, accumulate {accumulate}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn fused_rows_equal_the_plain_product_sums_and_step_in_every_build() {
    let mut checked = 0;
    for products::Build {
        name: build,
        fused_rows,
        ..
    } in products::builds()
    {
        // Rows 1..rows end with every mix of blocks of eight and four rows and lone rows.
        for rows in 1..=18 {
            for cols in [1, 3, 4, 5, 8, 13] {
                for (accumulate, learn, backward, negate, count) in [
                    (false, SGD_STEP, false, true, 1.0),
                    (true, SGD_STEP, true, false, 1.0),
                    (false, SGD_STEP, true, false, 2.5),
                    (false, MEAN, false, true, 2.5),
                    (true, MEAN, true, true, 1.0),
                    (true, NO_LEARNING, false, true, 1.0),
                    (false, NO_LEARNING, true, true, 1.0),
                ] {
                    // Rows 1..rows (row 0 and every other value stay untouched).
                    let w0 = values(rows * cols, (rows * 17 + cols) as u64);
                    let (x, e) = (values(cols, (cols + 5) as u64), values(rows, (rows + 11) as u64));
                    let start = values(rows, 3);
                    let d_start = values(cols, 7);
                    let grad_start = values(rows * cols, 13);
                    let rate = 0.037;
                    let (mut expected_w, mut expected_out) = (w0.clone(), start.clone());
                    let mut expected_d = if backward { vec![0.0; cols] } else { d_start.clone() };
                    let mut expected_grad = grad_start.clone();
                    for i in 1..rows {
                        let mut sum = 0.0;
                        for j in 0..cols {
                            sum = w0[i * cols + j].mul_add(x[j], sum);
                            if backward {
                                expected_d[j] = w0[i * cols + j].mul_add(e[i], expected_d[j]);
                            }
                        }
                        expected_out[i] = if accumulate { start[i] + sum } else { sum };
                        for j in 0..cols {
                            let mean = x[j].mul_add(e[i], 0.0) / count;
                            let mean = if negate { -mean } else { mean };
                            match learn {
                                SGD_STEP => expected_w[i * cols + j] = w0[i * cols + j] - rate * mean,
                                MEAN => expected_grad[i * cols + j] = mean,
                                _ => {}
                            }
                        }
                    }
                    let (mut w, mut out, mut d, mut grad) =
                        (w0.clone(), start.clone(), d_start.clone(), grad_start.clone());
                    // SAFETY: every address the arguments describe lies in the vectors.
                    unsafe {
                        fused_rows(
                            w.as_mut_ptr(),
                            x.as_ptr(),
                            out.as_mut_ptr(),
                            e.as_ptr(),
                            d.as_mut_ptr(),
                            grad.as_mut_ptr(),
                            cols as i64,
                            1,
                            rows as i64,
                            i64::from(accumulate),
                            learn,
                            i64::from(backward),
                            i64::from(negate),
                            count,
                            rate,
                        )
                    };
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let what = format!(
                        "{build}: rows {rows}, cols {cols}, accumulate {accumulate}, learn {learn}, backward {backward}"
                    );
                    assert_eq!(bits(&out), bits(&expected_out), "W·x, {what}");
                    assert_eq!(bits(&d), bits(&expected_d), "Wᵀ·e, {what}");
                    assert_eq!(bits(&w), bits(&expected_w), "W, {what}");
                    assert_eq!(bits(&grad), bits(&expected_grad), "gradient, {what}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 18 * 6 * 7);
}

//! The dense products of a step (`W·x`, `Wᵀ·e`, `e·rᵀ`, and one pass over W that computes
//! `W·x`, `Wᵀ·e` and the gradient of W or its absorbed SGD step together), compiled ahead of
//! time and called by the generated code.
//!
//! Cranelift 0.135's x86-64 backend has only 128-bit vectors; these loops are Rust generic over
//! vectors of lanes, built three times: for AVX-512 (the batch-row products on eight lanes),
//! for AVX (four) and for any x86-64 CPU; the JIT calls the widest build the CPU runs
//! ([`builds`]). Each computes every sum exactly as the interpreter does — from 0.0, over the
//! same index in the same order, each product added with one rounding (a fused multiply-add:
//! one instruction in the AVX and AVX-512 builds, `f64::mul_add` in the portable one) — so the
//! results agree bit for bit whichever build runs. Their safety rests on the JIT: it checks
//! every buffer's length before the generated code runs, and the code passes only pointers into
//! those buffers with the shapes the program was compiled for.

// Raw pointers are these loops' interface; register blocks are small arrays indexed in two
// dimensions, where the order of the loops (not an iterator's) is the point.
#![allow(unsafe_code, clippy::too_many_arguments, clippy::needless_range_loop)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m256d, __m256i, __m512d, _mm256_div_pd, _mm256_fmadd_pd, _mm256_loadu_pd, _mm256_loadu_si256,
    _mm256_loadu2_m128d, _mm256_maskload_pd, _mm256_maskstore_pd, _mm256_mul_pd, _mm256_permute2f128_pd,
    _mm256_set1_pd, _mm256_setzero_pd, _mm256_storeu_pd, _mm256_sub_pd, _mm256_unpackhi_pd, _mm256_unpacklo_pd,
    _mm256_xor_pd, _mm512_castpd_si512, _mm512_castsi512_pd, _mm512_div_pd, _mm512_fmadd_pd, _mm512_loadu_pd,
    _mm512_mask_storeu_pd, _mm512_maskz_loadu_pd, _mm512_mul_pd, _mm512_set1_epi64, _mm512_set1_pd, _mm512_setzero_pd,
    _mm512_storeu_pd, _mm512_sub_pd, _mm512_xor_si512,
};

/// The signature of `column_sums` in each build (see [`portable::column_sums`]).
pub type ColumnSumsFn =
    unsafe extern "C" fn(*const f64, i64, *const f64, i64, i64, *mut f64, i64, i64, i64, i64, i64, i64, i64, f64, f64);

/// The signature of `mat_vec` in each build.
pub type MatVecFn = unsafe extern "C" fn(*const f64, *const f64, *mut f64, i64, i64, i64, i64, i64, *mut f64);

/// The signature of `fused_rows` in each build.
pub type FusedRowsFn = unsafe extern "C" fn(
    *mut f64,
    *const f64,
    *mut f64,
    *const f64,
    *mut f64,
    *mut f64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    f64,
    f64,
);

/// `gle_column_sums` stores each sum.
pub const STORE: i64 = 0;
/// `gle_column_sums` stores `±sum / count`.
pub const MEAN: i64 = 1;
/// `gle_column_sums` updates the destination to `θ − rate·(±sum / count)`.
pub const SGD_STEP: i64 = 2;
/// `gle_fused_rows` neither writes a gradient nor steps W (besides [`MEAN`] and [`SGD_STEP`]).
pub const NO_LEARNING: i64 = 0;

/// One build of the products: its name and its entry points.
#[derive(Clone, Copy, Debug)]
pub struct Build {
    /// `portable`, `avx` or `avx512`.
    pub name: &'static str,
    /// Its `gle_column_sums`.
    pub column_sums: ColumnSumsFn,
    /// Its `gle_mat_vec`.
    pub mat_vec: MatVecFn,
    /// Its `gle_fused_rows`.
    pub fused_rows: FusedRowsFn,
}

/// The build for any CPU.
const PORTABLE: Build = Build {
    name: "portable",
    column_sums: portable::column_sums,
    mat_vec: portable::mat_vec,
    fused_rows: portable::fused_rows,
};

/// The builds this CPU can run, the portable one first and the one with the widest vectors
/// last.
pub fn builds() -> Vec<Build> {
    let mut out = vec![PORTABLE];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("fma") {
            out.push(Build {
                name: "avx",
                column_sums: avx::column_sums,
                mat_vec: avx::mat_vec,
                fused_rows: avx::fused_rows,
            });
        }
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            out.push(Build {
                name: "avx512",
                column_sums: avx512::column_sums,
                mat_vec: avx512::mat_vec,
                fused_rows: avx512::fused_rows,
            });
        }
    }
    out
}

/// The products' symbols with the addresses of the build the JIT calls: the one with the
/// widest vectors this CPU has.
pub fn symbols() -> [(&'static str, *const u8); 3] {
    let widest = builds().pop().unwrap_or(PORTABLE);
    [
        ("gle_column_sums", widest.column_sums as *const u8),
        ("gle_mat_vec", widest.mat_vec as *const u8),
        ("gle_fused_rows", widest.fused_rows as *const u8),
    ]
}

/// The number of `i64` (pointer or integer) and `f64` arguments of each product, in order.
pub const SIGNATURES: &[(&str, usize, usize)] = &[
    ("gle_column_sums", 13, 2),
    ("gle_mat_vec", 9, 0),
    ("gle_fused_rows", 13, 2),
];

/// `N` f64 lanes and the lane-wise operations the products use (each lane an ordinary IEEE
/// operation, as on scalars).
trait Lanes: Copy {
    /// The number of lanes (at most [`MAX_LANES`]).
    const N: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f64) -> Self;
    unsafe fn load(p: *const f64) -> Self;
    unsafe fn store(self, p: *mut f64);
    /// The first `n < N` values at `p` in the first lanes, 0.0 in the others.
    unsafe fn load_first(p: *const f64, n: usize) -> Self;
    /// Stores the first `n < N` lanes at `p`.
    unsafe fn store_first(self, p: *mut f64, n: usize);
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    /// `self·b + c` rounded once (IEEE's fused multiply-add, as `f64::mul_add`).
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    unsafe fn neg(self) -> Self;
}

/// Four lanes, with the shuffles of the passes that put rows of W in the lanes.
trait Quad: Lanes {
    /// `[lo[0], lo[1], hi[0], hi[1]]`.
    unsafe fn load_halves(lo: *const f64, hi: *const f64) -> Self;
    /// `[a0, b0, a2, b2]` of `a = self`, `b = o`.
    unsafe fn unpack_lo(self, o: Self) -> Self;
    /// `[a1, b1, a3, b3]` of `a = self`, `b = o`.
    unsafe fn unpack_hi(self, o: Self) -> Self;
    /// `[a0, a1, b0, b1]` of `a = self`, `b = o`.
    unsafe fn low_halves(self, o: Self) -> Self;
    /// `[a2, a3, b2, b3]` of `a = self`, `b = o`.
    unsafe fn high_halves(self, o: Self) -> Self;
}

/// The most lanes a build's vectors have (AVX-512's eight).
const MAX_LANES: usize = 8;

/// The values of scratch `gle_mat_vec` needs per column of W (two vectors of batch rows).
pub const MAT_VEC_SCRATCH_PER_COLUMN: usize = 2 * MAX_LANES;

/// Four lanes in an array: the build for any CPU.
#[derive(Clone, Copy)]
struct Array([f64; 4]);

impl Array {
    #[inline(always)]
    fn each(self, o: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self([
            f(self.0[0], o.0[0]),
            f(self.0[1], o.0[1]),
            f(self.0[2], o.0[2]),
            f(self.0[3], o.0[3]),
        ])
    }
}

impl Lanes for Array {
    const N: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self([0.0; 4])
    }
    #[inline(always)]
    unsafe fn splat(v: f64) -> Self {
        Self([v; 4])
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        // SAFETY: the caller passes four readable values.
        unsafe { Self(p.cast::<[f64; 4]>().read_unaligned()) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        // SAFETY: the caller passes four writable values.
        unsafe { p.cast::<[f64; 4]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f64, n: usize) -> Self {
        let mut lanes = [0.0; 4];
        for (l, lane) in lanes.iter_mut().enumerate().take(n) {
            // SAFETY: the caller passes `n` readable values.
            *lane = unsafe { *p.add(l) };
        }
        Self(lanes)
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f64, n: usize) {
        for (l, lane) in self.0.into_iter().enumerate().take(n) {
            // SAFETY: the caller passes `n` writable values.
            unsafe { *p.add(l) = lane };
        }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self.each(o, |a, b| a - b)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        self.each(o, |a, b| a * b)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|l| self.0[l].mul_add(b.0[l], c.0[l])))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        self.each(o, |a, b| a / b)
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        self.each(self, |a, _| -a)
    }
}

impl Quad for Array {
    #[inline(always)]
    unsafe fn load_halves(lo: *const f64, hi: *const f64) -> Self {
        // SAFETY: the caller passes two readable values at each address.
        unsafe { Self([*lo, *lo.add(1), *hi, *hi.add(1)]) }
    }
    #[inline(always)]
    unsafe fn unpack_lo(self, o: Self) -> Self {
        Self([self.0[0], o.0[0], self.0[2], o.0[2]])
    }
    #[inline(always)]
    unsafe fn unpack_hi(self, o: Self) -> Self {
        Self([self.0[1], o.0[1], self.0[3], o.0[3]])
    }
    #[inline(always)]
    unsafe fn low_halves(self, o: Self) -> Self {
        Self([self.0[0], self.0[1], o.0[0], o.0[1]])
    }
    #[inline(always)]
    unsafe fn high_halves(self, o: Self) -> Self {
        Self([self.0[2], self.0[3], o.0[2], o.0[3]])
    }
}

/// An AVX register (used only inside functions compiled for AVX, which the callers check).
#[cfg(target_arch = "x86_64")]
impl Lanes for __m256d {
    const N: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm256_setzero_pd() }
    }
    #[inline(always)]
    unsafe fn splat(v: f64) -> Self {
        unsafe { _mm256_set1_pd(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        unsafe { _mm256_loadu_pd(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        unsafe { _mm256_storeu_pd(p, self) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f64, n: usize) -> Self {
        unsafe { _mm256_maskload_pd(p, first_lanes_256(n)) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f64, n: usize) {
        unsafe { _mm256_maskstore_pd(p, first_lanes_256(n), self) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        unsafe { _mm256_sub_pd(self, o) }
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        unsafe { _mm256_mul_pd(self, o) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe { _mm256_fmadd_pd(self, b, c) }
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        unsafe { _mm256_div_pd(self, o) }
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        unsafe { _mm256_xor_pd(self, _mm256_set1_pd(-0.0)) }
    }
}

/// The mask of AVX's masked loads and stores that selects the first `n` of four lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn first_lanes_256(n: usize) -> __m256i {
    static ONES_THEN_ZEROS: [i64; 8] = [-1, -1, -1, -1, 0, 0, 0, 0];
    unsafe { _mm256_loadu_si256(ONES_THEN_ZEROS.as_ptr().add(4 - n).cast()) }
}

#[cfg(target_arch = "x86_64")]
impl Quad for __m256d {
    #[inline(always)]
    unsafe fn load_halves(lo: *const f64, hi: *const f64) -> Self {
        unsafe { _mm256_loadu2_m128d(hi, lo) }
    }
    #[inline(always)]
    unsafe fn unpack_lo(self, o: Self) -> Self {
        unsafe { _mm256_unpacklo_pd(self, o) }
    }
    #[inline(always)]
    unsafe fn unpack_hi(self, o: Self) -> Self {
        unsafe { _mm256_unpackhi_pd(self, o) }
    }
    #[inline(always)]
    unsafe fn low_halves(self, o: Self) -> Self {
        unsafe { _mm256_permute2f128_pd(self, o, 0x20) }
    }
    #[inline(always)]
    unsafe fn high_halves(self, o: Self) -> Self {
        unsafe { _mm256_permute2f128_pd(self, o, 0x31) }
    }
}

/// An AVX-512 register (used only inside functions compiled for AVX-512, which the callers
/// check).
#[cfg(target_arch = "x86_64")]
impl Lanes for __m512d {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm512_setzero_pd() }
    }
    #[inline(always)]
    unsafe fn splat(v: f64) -> Self {
        unsafe { _mm512_set1_pd(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        unsafe { _mm512_loadu_pd(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        unsafe { _mm512_storeu_pd(p, self) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f64, n: usize) -> Self {
        unsafe { _mm512_maskz_loadu_pd(((1u32 << n) - 1) as u8, p) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f64, n: usize) {
        unsafe { _mm512_mask_storeu_pd(p, ((1u32 << n) - 1) as u8, self) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        unsafe { _mm512_sub_pd(self, o) }
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        unsafe { _mm512_mul_pd(self, o) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe { _mm512_fmadd_pd(self, b, c) }
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        unsafe { _mm512_div_pd(self, o) }
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        // The sign bit flipped, as `-x` does (AVX-512F has no floating-point xor).
        unsafe { _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(self), _mm512_set1_epi64(i64::MIN))) }
    }
}

/// The arguments of `gle_column_sums`: `dst_o[j] = fin(Σ_k src_k[j]·scale(k, o))` for the
/// outputs `o` in `first..end` and columns `j < cols`, the sum over `k < terms` in order from
/// 0.0, where `src_k = src + k·src_stride`, `scale(k, o) = scales[k·term_stride +
/// o·output_stride]` and `dst_o = dst + o·dst_stride`.
struct Sums {
    src: *const f64,
    src_stride: usize,
    scales: *const f64,
    term_stride: usize,
    output_stride: usize,
    dst: *mut f64,
    dst_stride: usize,
    terms: usize,
    cols: usize,
    finish: i64,
    negate: bool,
    count: f64,
    rate: f64,
}

/// [`Sums`] for outputs `first..end`: in fours that share each load of the source rows, then
/// a pair, then an odd last one alone.
#[inline(always)]
unsafe fn column_sums<L: Lanes, const DIVIDE: bool>(s: &Sums, first: usize, end: usize) {
    let mut o = first;
    while o + 4 <= end {
        unsafe { strips::<L, DIVIDE, 4, 2>(s, o) };
        o += 4;
    }
    if o + 2 <= end {
        unsafe { strips::<L, DIVIDE, 2, 4>(s, o) };
        o += 2;
    }
    if o < end {
        unsafe { strips::<L, DIVIDE, 1, 4>(s, o) };
    }
}

/// Every column of outputs `o..o + O`: strips of `FULL` vectors per output (eight accumulators,
/// or four for a single output), then the rest in one strip of whole vectors and one vector
/// of the last columns.
#[inline(always)]
unsafe fn strips<L: Lanes, const DIVIDE: bool, const O: usize, const FULL: usize>(s: &Sums, o: usize) {
    let width = L::N * FULL;
    let full = s.cols / width;
    for k in 0..full {
        unsafe { strip::<L, DIVIDE, O, FULL, false>(s, o, k * width) };
    }
    let first = full * width;
    unsafe {
        match (s.cols % width / L::N, !s.cols.is_multiple_of(L::N)) {
            (0, false) => {}
            (0, true) => strip::<L, DIVIDE, O, 0, true>(s, o, first),
            (1, false) => strip::<L, DIVIDE, O, 1, false>(s, o, first),
            (1, true) => strip::<L, DIVIDE, O, 1, true>(s, o, first),
            (2, false) => strip::<L, DIVIDE, O, 2, false>(s, o, first),
            (2, true) => strip::<L, DIVIDE, O, 2, true>(s, o, first),
            (_, false) => strip::<L, DIVIDE, O, 3, false>(s, o, first),
            (_, true) => strip::<L, DIVIDE, O, 3, true>(s, o, first),
        }
    }
}

/// Columns `first..` of outputs `o..o + O`: `V` whole vectors per output and, with `PART`, one
/// vector of the last `cols % N` columns, summed in registers while the sum walks the terms.
#[inline(always)]
unsafe fn strip<L: Lanes, const DIVIDE: bool, const O: usize, const V: usize, const PART: bool>(
    s: &Sums,
    o: usize,
    first: usize,
) {
    unsafe {
        let part = s.cols % L::N;
        let mut acc = [[L::zero(); V]; O];
        let mut last = [L::zero(); O];
        for k in 0..s.terms {
            let row = s.src.add(k * s.src_stride + first);
            let mut splats = [L::zero(); O];
            for (p, splat) in splats.iter_mut().enumerate() {
                *splat = L::splat(*s.scales.add(k * s.term_stride + (o + p) * s.output_stride));
            }
            for v in 0..V {
                let x = L::load(row.add(L::N * v));
                for p in 0..O {
                    acc[p][v] = x.mul_add(splats[p], acc[p][v]);
                }
            }
            if PART {
                let x = L::load_first(row.add(L::N * V), part);
                for p in 0..O {
                    last[p] = x.mul_add(splats[p], last[p]);
                }
            }
        }
        for p in 0..O {
            let dst = s.dst.add((o + p) * s.dst_stride + first);
            for (v, sum) in acc[p].iter().enumerate() {
                let at = dst.add(L::N * v);
                finish::<L, DIVIDE>(s, *sum, L::load(at)).store(at);
            }
            if PART {
                let at = dst.add(L::N * V);
                finish::<L, DIVIDE>(s, last[p], L::load_first(at, part)).store_first(at, part);
            }
        }
    }
}

/// What a strip stores for `sums` where the destination holds `old` (see [`Sums`]).
#[inline(always)]
unsafe fn finish<L: Lanes, const DIVIDE: bool>(s: &Sums, sums: L, old: L) -> L {
    unsafe {
        match s.finish {
            STORE => sums,
            _ => {
                let m = mean_vector::<L, DIVIDE>(sums, s.negate, s.count);
                if s.finish == SGD_STEP {
                    old.sub(L::splat(s.rate).mul(m))
                } else {
                    m
                }
            }
        }
    }
}

/// `out[b][i] (+)= Σ_j W[i][j]·x[b][j]` for batch rows `b` in `first..end` and every row `i`
/// of the `rows × cols` matrix W, each sum in order over `j` from 0.0. Batch rows go `2·N` (two
/// vectors of `L`), `N` or four (one `Q`) at a time, one row per lane, their `x` interleaved
/// into `scratch` ([`MAT_VEC_SCRATCH_PER_COLUMN`]`·cols` values), and rows of W in fours that
/// share each load of it; the last batch rows (fewer than four) run one at a time, with rows
/// of W in the lanes.
#[inline(always)]
unsafe fn mat_vec<L: Lanes, Q: Quad>(
    w: *const f64,
    x: *const f64,
    out: *mut f64,
    rows: usize,
    cols: usize,
    first: usize,
    end: usize,
    accumulate: bool,
    scratch: *mut f64,
) {
    unsafe {
        let mut b = first;
        while b + 2 * L::N <= end {
            lanes_block::<L, 2>(w, x, out, rows, cols, b, accumulate, scratch);
            b += 2 * L::N;
        }
        if b + L::N <= end {
            lanes_block::<L, 1>(w, x, out, rows, cols, b, accumulate, scratch);
            b += L::N;
        }
        if b + 4 <= end {
            lanes_block::<Q, 1>(w, x, out, rows, cols, b, accumulate, scratch);
            b += 4;
        }
        for b in b..end {
            let (xrow, orow) = (x.add(b * cols), out.add(b * rows));
            let mut i = 0;
            while i + 16 <= rows {
                row_lane_dots::<Q, 4>(w, xrow, orow, i, rows, cols, accumulate);
                i += 16;
            }
            match rows - i {
                0 => {}
                1..=4 => row_lane_dots::<Q, 1>(w, xrow, orow, i, rows, cols, accumulate),
                5..=8 => row_lane_dots::<Q, 2>(w, xrow, orow, i, rows, cols, accumulate),
                9..=12 => row_lane_dots::<Q, 3>(w, xrow, orow, i, rows, cols, accumulate),
                _ => row_lane_dots::<Q, 4>(w, xrow, orow, i, rows, cols, accumulate),
            }
        }
    }
}

/// [`mat_vec`] for batch rows `b..b + N·H`.
#[inline(always)]
unsafe fn lanes_block<L: Lanes, const H: usize>(
    w: *const f64,
    x: *const f64,
    out: *mut f64,
    rows: usize,
    cols: usize,
    b: usize,
    accumulate: bool,
    scratch: *mut f64,
) {
    unsafe {
        let lanes = L::N * H;
        for j in 0..cols {
            for l in 0..lanes {
                *scratch.add(j * lanes + l) = *x.add((b + l) * cols + j);
            }
        }
        let mut i = 0;
        while i + 4 <= rows {
            lanes_rows::<L, H, 4>(w, out, rows, cols, b, i, accumulate, scratch);
            i += 4;
        }
        for i in i..rows {
            lanes_rows::<L, H, 1>(w, out, rows, cols, b, i, accumulate, scratch);
        }
    }
}

/// Rows `i..i + R` of W against the interleaved batch rows `b..b + N·H` in `scratch`.
#[inline(always)]
unsafe fn lanes_rows<L: Lanes, const H: usize, const R: usize>(
    w: *const f64,
    out: *mut f64,
    rows: usize,
    cols: usize,
    b: usize,
    i: usize,
    accumulate: bool,
    scratch: *const f64,
) {
    unsafe {
        let lanes = L::N * H;
        let mut acc = [[L::zero(); H]; R];
        for j in 0..cols {
            let mut xs = [L::zero(); H];
            for (h, xv) in xs.iter_mut().enumerate() {
                *xv = L::load(scratch.add(j * lanes + L::N * h));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let wv = L::splat(*w.add((i + r) * cols + j));
                for h in 0..H {
                    acc_r[h] = wv.mul_add(xs[h], acc_r[h]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (h, sums) in acc_r.iter().enumerate() {
                let mut lanes = [0.0f64; MAX_LANES];
                sums.store(lanes.as_mut_ptr());
                for (l, sum) in lanes.into_iter().take(L::N).enumerate() {
                    let at = out.add((b + L::N * h + l) * rows + i + r);
                    *at = if accumulate { *at + sum } else { sum };
                }
            }
        }
    }
}

/// `out[i + r] (+)= Σ_j W[i + r][j]·x[j]` for `r < 4·G` and `i + r < rows`, one row per
/// lane: each pair of columns of four rows is loaded as two vectors of half-rows and unpacked
/// into the two columns, so every lane sums its row in order over `j` while `G` groups of four
/// rows hide the additions' latency. Lanes past the last row repeat it and are not stored.
#[inline(always)]
unsafe fn row_lane_dots<Q: Quad, const G: usize>(
    w: *const f64,
    x: *const f64,
    out: *mut f64,
    i: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    unsafe {
        let row = |r: usize| w.add((i + r).min(rows - 1) * cols);
        let mut acc = [Q::zero(); G];
        let mut j = 0;
        while j + 2 <= cols {
            let (x0, x1) = (Q::splat(*x.add(j)), Q::splat(*x.add(j + 1)));
            for (g, sum) in acc.iter_mut().enumerate() {
                let even = Q::load_halves(row(4 * g).add(j), row(4 * g + 2).add(j));
                let odd = Q::load_halves(row(4 * g + 1).add(j), row(4 * g + 3).add(j));
                *sum = even.unpack_lo(odd).mul_add(x0, *sum);
                *sum = even.unpack_hi(odd).mul_add(x1, *sum);
            }
            j += 2;
        }
        if j < cols {
            let x0 = Q::splat(*x.add(j));
            for (g, sum) in acc.iter_mut().enumerate() {
                let column = [0, 1, 2, 3].map(|r| *row(4 * g + r).add(j));
                *sum = Q::load(column.as_ptr()).mul_add(x0, *sum);
            }
        }
        for (g, sums) in acc.iter().enumerate() {
            let mut lanes = [0.0f64; 4];
            sums.store(lanes.as_mut_ptr());
            for (l, sum) in lanes.into_iter().enumerate().take(rows.saturating_sub(i + 4 * g)) {
                let at = out.add(i + 4 * g + l);
                *at = if accumulate { *at + sum } else { sum };
            }
        }
    }
}

/// `±sum / count` for four sums: the mean of the gradient sums and of the SGD steps. Without
/// `DIVIDE` (a `count` of 1.0, batch 1) the sums are not divided (`x / 1.0` is `x`). The entry
/// points choose `DIVIDE` once per call: a test of `count` here let the compiler issue the
/// division anyway and select afterwards, which kept the divider busy at batch 1.
#[inline(always)]
unsafe fn mean_vector<L: Lanes, const DIVIDE: bool>(sum: L, negate: bool, count: f64) -> L {
    unsafe {
        let m = if DIVIDE { sum.div(L::splat(count)) } else { sum };
        if negate { m.neg() } else { m }
    }
}

/// [`mean_vector`] for one sum.
#[inline(always)]
fn mean_scalar<const DIVIDE: bool>(sum: f64, negate: bool, count: f64) -> f64 {
    let m = if DIVIDE { sum / count } else { sum };
    if negate { -m } else { m }
}

/// The arguments of `gle_fused_rows`: for one batch row, `W·x`, `Wᵀ·e` (when `backward`) and,
/// as `learn` says, the gradient `±e·xᵀ / count` ([`MEAN`], into `grad`) or the SGD step of W
/// against it applied in place ([`SGD_STEP`]: an absorbed update), in one pass over W.
struct FusedRows {
    w: *mut f64,
    x: *const f64,
    out: *mut f64,
    e: *const f64,
    d: *mut f64,
    grad: *mut f64,
    cols: usize,
    accumulate: bool,
    learn: i64,
    negate: bool,
    count: f64,
    rate: f64,
}

/// For rows `i` in `first..end`, on the values W holds when the call starts: `out[i] (+)=
/// Σ_j W[i][j]·x[j]`, each sum in order over `j` from 0.0; with `BACKWARD`, `d[j] = Σ_i
/// W[i][j]·e[i]` over those rows, in order from 0.0 (what [`column_sums`] computes for `Wᵀ·e`);
/// with `learn` [`MEAN`], `grad[i][j] = ±fma(x[j], e[i], 0.0) / count`, the mean [`column_sums`]
/// computes for one term; with [`SGD_STEP`], each `W[i][j]`, once read, becomes `W[i][j] −
/// rate·` that mean, the step [`column_sums`] applies for one term. Rows go eight, then four
/// at a time, their sums `W·x` one row per lane ([`fused_lanes`]: eight chains of multiply-adds
/// in flight, where four left the sums waiting on the multiply-add's latency); the products,
/// the sums of `d` and the gradients or steps four columns per vector.
#[inline(always)]
unsafe fn fused_rows<Q: Quad, const DIVIDE: bool, const BACKWARD: bool>(p: &FusedRows, first: usize, end: usize) {
    if BACKWARD {
        for j in 0..p.cols {
            unsafe { *p.d.add(j) = 0.0 };
        }
    }
    let mut i = first;
    while i + 8 <= end {
        unsafe { fused_lanes::<Q, DIVIDE, BACKWARD, 2>(p, i) };
        i += 8;
    }
    if i + 4 <= end {
        unsafe { fused_lanes::<Q, DIVIDE, BACKWARD, 1>(p, i) };
        i += 4;
    }
    for i in i..end {
        unsafe { fused_row::<Q, DIVIDE, BACKWARD>(p, i) };
    }
}

/// Rows `i..i + 4·G` of [`fused_rows`], the rows' sums `W·x` one row per lane: each block of
/// four rows by four columns, loaded as rows for `Wᵀ·e` and the gradient, is transposed into
/// its four columns, so that every lane adds its row's terms in order while `G` vectors of
/// sums hide the multiply-adds' latency.
#[inline(always)]
unsafe fn fused_lanes<Q: Quad, const DIVIDE: bool, const BACKWARD: bool, const G: usize>(p: &FusedRows, i: usize) {
    unsafe {
        let mut acc = [Q::zero(); G];
        let factors: [[f64; 4]; G] = std::array::from_fn(|g| std::array::from_fn(|r| *p.e.add(i + 4 * g + r)));
        let rate = Q::splat(p.rate);
        let mut j = 0;
        while j + 4 <= p.cols {
            let x = Q::load(p.x.add(j));
            let mut d = if BACKWARD { Q::load(p.d.add(j)) } else { Q::zero() };
            for (g, sums) in acc.iter_mut().enumerate() {
                let mut rows = [Q::zero(); 4];
                for (r, w) in rows.iter_mut().enumerate() {
                    let at = p.w.add((i + 4 * g + r) * p.cols + j);
                    *w = Q::load(at);
                    let e = Q::splat(factors[g][r]);
                    if BACKWARD {
                        d = w.mul_add(e, d);
                    }
                    learn_vector::<Q, DIVIDE>(p, *w, at, x, e, rate, (i + 4 * g + r) * p.cols + j);
                }
                let (even01, odd01) = (rows[0].unpack_lo(rows[1]), rows[0].unpack_hi(rows[1]));
                let (even23, odd23) = (rows[2].unpack_lo(rows[3]), rows[2].unpack_hi(rows[3]));
                let columns = [
                    even01.low_halves(even23),
                    odd01.low_halves(odd23),
                    even01.high_halves(even23),
                    odd01.high_halves(odd23),
                ];
                for (l, column) in columns.into_iter().enumerate() {
                    *sums = column.mul_add(Q::splat(*p.x.add(j + l)), *sums);
                }
            }
            if BACKWARD {
                d.store(p.d.add(j));
            }
            j += 4;
        }
        for j in j..p.cols {
            let x = *p.x.add(j);
            for (g, sums) in acc.iter_mut().enumerate() {
                let mut column = [0.0f64; 4];
                for (r, value) in column.iter_mut().enumerate() {
                    let at = p.w.add((i + 4 * g + r) * p.cols + j);
                    let w = *at;
                    *value = w;
                    if BACKWARD {
                        *p.d.add(j) = w.mul_add(factors[g][r], *p.d.add(j));
                    }
                    learn_scalar::<DIVIDE>(p, w, at, x, factors[g][r], (i + 4 * g + r) * p.cols + j);
                }
                *sums = Q::load(column.as_ptr()).mul_add(Q::splat(x), *sums);
            }
        }
        for (g, sums) in acc.iter().enumerate() {
            let mut lanes = [0.0f64; 4];
            sums.store(lanes.as_mut_ptr());
            for (r, sum) in lanes.into_iter().enumerate() {
                let at = p.out.add(i + 4 * g + r);
                *at = if p.accumulate { *at + sum } else { sum };
            }
        }
    }
}

/// Row `i` of [`fused_rows`] (the rows after the last block of four).
#[inline(always)]
unsafe fn fused_row<Q: Quad, const DIVIDE: bool, const BACKWARD: bool>(p: &FusedRows, i: usize) {
    unsafe {
        let mut sum = 0.0f64;
        let factor = *p.e.add(i);
        let e = Q::splat(factor);
        let rate = Q::splat(p.rate);
        let row = p.w.add(i * p.cols);
        let mut j = 0;
        while j + 4 <= p.cols {
            let at = row.add(j);
            let x = Q::load(p.x.add(j));
            let w = Q::load(at);
            for l in 0..4 {
                sum = (*at.add(l)).mul_add(*p.x.add(j + l), sum);
            }
            if BACKWARD {
                w.mul_add(e, Q::load(p.d.add(j))).store(p.d.add(j));
            }
            learn_vector::<Q, DIVIDE>(p, w, at, x, e, rate, i * p.cols + j);
            j += 4;
        }
        for j in j..p.cols {
            let (at, x) = (row.add(j), *p.x.add(j));
            let w = *at;
            sum = w.mul_add(x, sum);
            if BACKWARD {
                *p.d.add(j) = w.mul_add(factor, *p.d.add(j));
            }
            learn_scalar::<DIVIDE>(p, w, at, x, factor, i * p.cols + j);
        }
        let at = p.out.add(i);
        *at = if p.accumulate { *at + sum } else { sum };
    }
}

/// The learning of [`fused_rows`] for four weights `w` of one row, read at `at` (element
/// `index` of W): as `p.learn` says, their gradient `±fma(x, e, 0) / count` stored at the same
/// index of `grad`, or W stepped against it in place.
#[inline(always)]
unsafe fn learn_vector<Q: Quad, const DIVIDE: bool>(
    p: &FusedRows,
    w: Q,
    at: *mut f64,
    x: Q,
    e: Q,
    rate: Q,
    index: usize,
) {
    if p.learn != NO_LEARNING {
        unsafe {
            let m = mean_vector::<Q, DIVIDE>(x.mul_add(e, Q::zero()), p.negate, p.count);
            if p.learn == SGD_STEP {
                w.sub(rate.mul(m)).store(at);
            } else {
                m.store(p.grad.add(index));
            }
        }
    }
}

/// [`learn_vector`] for one weight.
#[inline(always)]
unsafe fn learn_scalar<const DIVIDE: bool>(p: &FusedRows, w: f64, at: *mut f64, x: f64, e: f64, index: usize) {
    if p.learn != NO_LEARNING {
        let m = mean_scalar::<DIVIDE>(x.mul_add(e, 0.0), p.negate, p.count);
        unsafe {
            if p.learn == SGD_STEP {
                *at = w - p.rate * m;
            } else {
                *p.grad.add(index) = m;
            }
        }
    }
}

/// Defines the three `extern "C"` entry points of one build of the products.
macro_rules! entry_points {
    ($lanes:ty, $quad:ty $(, $feature:literal)?) => {
        /// `dst_o[j] = fin(Σ_k src_k[j]·scale(k, o))` for outputs `first..end` and columns
        /// `j < cols`, each sum over `k < terms` in order from 0.0, where `src_k = src +
        /// k·src_stride`, `scale(k, o) = scales[k·term_stride + o·output_stride]` and `dst_o =
        /// dst + o·dst_stride`; `fin` is `finish`: [`STORE`](super::STORE),
        /// [`MEAN`](super::MEAN) (`±sum / count`) or [`SGD_STEP`](super::SGD_STEP)
        /// (`θ − rate·(±sum / count)` in place).
        ///
        /// # Safety
        /// Every address the arguments describe must be valid; the AVX build needs AVX and
        /// FMA, the AVX-512 build AVX-512F and FMA.
        $(#[target_feature(enable = $feature)])?
        pub unsafe extern "C" fn column_sums(
            src: *const f64,
            src_stride: i64,
            scales: *const f64,
            term_stride: i64,
            output_stride: i64,
            dst: *mut f64,
            dst_stride: i64,
            terms: i64,
            cols: i64,
            first: i64,
            end: i64,
            finish: i64,
            negate: i64,
            count: f64,
            rate: f64,
        ) {
            let sums = Sums {
                src,
                src_stride: src_stride as usize,
                scales,
                term_stride: term_stride as usize,
                output_stride: output_stride as usize,
                dst,
                dst_stride: dst_stride as usize,
                terms: terms as usize,
                cols: cols as usize,
                finish,
                negate: negate != 0,
                count,
                rate,
            };
            let (first, end) = (first as usize, end as usize);
            unsafe {
                if count == 1.0 {
                    super::column_sums::<$lanes, false>(&sums, first, end)
                } else {
                    super::column_sums::<$lanes, true>(&sums, first, end)
                }
            }
        }

        /// `out[b][i] (+)= Σ_j W[i][j]·x[b][j]` (`+=` when `accumulate` is 1) for batch rows
        /// `first..end` and every row `i` of the `rows × cols` matrix W, each sum in order over
        /// `j` from 0.0; `scratch` holds
        /// [`MAT_VEC_SCRATCH_PER_COLUMN`](super::MAT_VEC_SCRATCH_PER_COLUMN)`·cols` values.
        ///
        /// # Safety
        /// Every address the arguments describe must be valid; the AVX build needs AVX and
        /// FMA, the AVX-512 build AVX-512F and FMA.
        $(#[target_feature(enable = $feature)])?
        pub unsafe extern "C" fn mat_vec(
            w: *const f64,
            x: *const f64,
            out: *mut f64,
            rows: i64,
            cols: i64,
            first: i64,
            end: i64,
            accumulate: i64,
            scratch: *mut f64,
        ) {
            unsafe {
                super::mat_vec::<$lanes, $quad>(
                    w,
                    x,
                    out,
                    rows as usize,
                    cols as usize,
                    first as usize,
                    end as usize,
                    accumulate != 0,
                    scratch,
                )
            }
        }

        /// For rows `i` in `first..end` of one batch row, on the values W holds when the
        /// call starts: `out[i] (+)= Σ_j W[i][j]·x[j]` (`+=` when `accumulate` is 1), each sum
        /// in order over `j` from 0.0; when `backward` is 1, `d[j] = Σ_i W[i][j]·e[i]` (`cols`
        /// values) over those rows, in order from 0.0; when `learn` is
        /// [`MEAN`](super::MEAN), `grad[i][j] = ±fma(x[j], e[i], 0.0) / count` (`−` when `negate`
        /// is 1, `grad` shaped as W); when it is [`SGD_STEP`](super::SGD_STEP), each `W[i][j]`,
        /// once read, becomes `W[i][j] − rate·` that (an absorbed update);
        /// [`NO_LEARNING`](super::NO_LEARNING) leaves both alone:
        /// `W·x`, `Wᵀ·e` and the gradient or the SGD step of the same W in one pass over it.
        ///
        /// # Safety
        /// Every address the arguments describe must be valid (`d` only when `backward` is 1,
        /// `grad` only when `learn` is `MEAN`); the AVX build needs AVX and FMA, the
        /// AVX-512 build AVX-512F and FMA.
        $(#[target_feature(enable = $feature)])?
        pub unsafe extern "C" fn fused_rows(
            w: *mut f64,
            x: *const f64,
            out: *mut f64,
            e: *const f64,
            d: *mut f64,
            grad: *mut f64,
            cols: i64,
            first: i64,
            end: i64,
            accumulate: i64,
            learn: i64,
            backward: i64,
            negate: i64,
            count: f64,
            rate: f64,
        ) {
            let pass = FusedRows {
                w,
                x,
                out,
                e,
                d,
                grad,
                cols: cols as usize,
                accumulate: accumulate != 0,
                learn,
                negate: negate != 0,
                count,
                rate,
            };
            let (first, end) = (first as usize, end as usize);
            unsafe {
                match (count == 1.0, backward != 0) {
                    (true, false) => super::fused_rows::<$quad, false, false>(&pass, first, end),
                    (true, true) => super::fused_rows::<$quad, false, true>(&pass, first, end),
                    (false, false) => super::fused_rows::<$quad, true, false>(&pass, first, end),
                    (false, true) => super::fused_rows::<$quad, true, true>(&pass, first, end),
                }
            }
        }
    };
}

/// The build for CPUs with AVX-512 and FMA (its batch-row products on eight lanes, the passes with
/// rows of W in the lanes as in the AVX build).
#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use super::{FusedRows, Sums};
    use std::arch::x86_64::{__m256d, __m512d};
    entry_points!(__m512d, __m256d, "avx512f,fma");
}

/// The build for CPUs with AVX and FMA.
#[cfg(target_arch = "x86_64")]
pub mod avx {
    use super::{FusedRows, Sums};
    use std::arch::x86_64::__m256d;
    entry_points!(__m256d, __m256d, "avx,fma");
}

/// The build for any CPU.
pub mod portable {
    use super::{Array, FusedRows, Sums};
    entry_points!(Array, Array);
}

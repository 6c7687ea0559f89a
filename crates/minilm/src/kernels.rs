//! Numeric kernels of the forward pass, on plain row-major `f32` slices.
//!
//! Matrix products go to the `gemm` crate (runtime-dispatched SIMD kernels, AVX-512 included).
//! Everything else is written out here as simple loops over rows that the compiler vectorises:
//! layer normalisation (fused with the residual addition), the exact GELU, the row softmax of
//! attention, mean pooling and L2 normalisation. Slice lengths are checked with `assert!`; a
//! failed check is an internal error, caught by the caller (see `MiniLm::embed_batch`).

use gemm::Parallelism;
use multiversion::multiversion;

/// A read-only matrix view: element (r, c) is `data[r·row_stride + c·col_stride]`. The
/// constructor checks that every element lies inside `data`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    pub fn new(
        data: &'a [f32],
        (rows, cols): (usize, usize),
        (row_stride, col_stride): (usize, usize),
    ) -> View<'a> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1).checked_mul(row_stride).and_then(|a| {
                (cols - 1)
                    .checked_mul(col_stride)
                    .and_then(|b| a.checked_add(b))
            });
            assert!(
                matches!(last, Some(l) if l < data.len()),
                "matrix view out of bounds"
            );
        }
        View {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A contiguous row-major `rows × cols` matrix.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> View<'a> {
        assert_eq!(data.len(), rows * cols, "dense matrix size");
        View::new(data, (rows, cols), (cols, 1))
    }
}

/// A writable matrix view whose rows are contiguous (column stride 1) and do not overlap
/// (`row_stride ≥ cols`), so that distinct elements are distinct memory.
pub struct ViewMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> ViewMut<'a> {
    pub fn new(data: &'a mut [f32], (rows, cols): (usize, usize), row_stride: usize) -> Self {
        assert!(row_stride >= cols, "overlapping destination rows");
        if rows > 0 && cols > 0 {
            let end = (rows - 1)
                .checked_mul(row_stride)
                .and_then(|a| a.checked_add(cols));
            assert!(
                matches!(end, Some(e) if e <= data.len()),
                "matrix view out of bounds"
            );
        }
        ViewMut {
            data,
            rows,
            cols,
            row_stride,
        }
    }

    pub fn dense(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "dense matrix size");
        ViewMut::new(data, (rows, cols), cols)
    }
}

/// `dst = scale · a · b`, or `dst += scale · a · b` when `accumulate`. `threads > 1` splits the
/// product over the current rayon pool; `threads == 1` runs it on the calling thread.
pub fn matmul(dst: ViewMut, a: View, b: View, scale: f32, accumulate: bool, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && dst.rows == m && dst.cols == n,
        "matrix shapes do not chain"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.data.chunks_mut(dst.row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the views' constructors checked that every element (r, c) of `a` (m × k), `b`
    // (k × n) and `dst` (m × n), at the strides passed here, lies inside its slice, so gemm only
    // reads and writes memory those slices own. `dst` borrows its slice mutably, so it aliases
    // neither input; its rows are contiguous and at least `cols` apart, so distinct elements are
    // distinct memory and the threads gemm may use write disjoint locations. Strides are below
    // the slices' lengths, which fit in isize.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0f32,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `out = a · w + bias` for row-major `a` (`m × k`), `w` (`k × n`), `out` (`m × n`) and a bias
/// row of length `n` added to every row of the product.
pub fn matmul_bias(
    out: &mut [f32],
    a: &[f32],
    w: &[f32],
    bias: &[f32],
    (m, k, n): (usize, usize, usize),
    threads: usize,
) {
    assert_eq!(bias.len(), n, "matmul bias");
    assert_eq!(out.len(), m * n, "matmul destination");
    if n == 0 {
        return;
    }
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    matmul(
        ViewMut::dense(out, m, n),
        View::dense(a, m, k),
        View::dense(w, k, n),
        1.0,
        true,
        threads,
    );
}

/// Adds `residual` to `x` and layer-normalises each row of the sum in place:
/// `x = (x + residual - mean) / sqrt(var + eps) * gamma + beta`, with the biased variance as in
/// BERT. Both slices are whole rows of width `gamma.len()`.
#[multiversion(targets = "simd")]
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    assert!(width > 0 && beta.len() == width, "layer norm parameters");
    assert!(
        x.len() == residual.len() && x.len().is_multiple_of(width),
        "layer norm input"
    );
    for (row, res) in x.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
        for (v, r) in row.iter_mut().zip(res) {
            *v += r;
        }
        layer_norm_row(row, gamma, beta, eps);
    }
}

/// Layer-normalises each row of `x` in place (no residual).
#[multiversion(targets = "simd")]
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    assert!(width > 0 && beta.len() == width, "layer norm parameters");
    assert!(x.len().is_multiple_of(width), "layer norm input");
    for row in x.chunks_exact_mut(width) {
        layer_norm_row(row, gamma, beta, eps);
    }
}

#[inline(always)]
fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let mut var_acc = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (acc, v) in var_acc.iter_mut().zip(c) {
            let d = v - mean;
            *acc += d * d;
        }
    }
    let mut var: f32 = var_acc.iter().sum();
    for v in chunks.remainder() {
        var += (v - mean) * (v - mean);
    }
    let inv = 1.0 / (var / n + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Sum with eight independent accumulators, which the compiler keeps in one vector register.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Softmax of one row in place.
#[multiversion(targets = "simd")]
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        // Only reachable with a non-finite score; keep the row finite rather than NaN-filled.
        let n = row.len() as f32;
        row.iter_mut().for_each(|v| *v = 1.0 / n);
        return;
    }
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// The exact GELU of BERT's `hidden_act: "gelu"`, `x · Φ(x) = x/2 · (1 + erf(x/√2))`, in place.
/// Written through erfc so that it keeps its relative precision where Φ(x) is tiny.
#[multiversion(targets = "simd")]
pub fn gelu(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        let x = *v;
        let e = erfc(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
        // Φ(x) = 1 - erfc(x/√2)/2 for x ≥ 0 and erfc(|x|/√2)/2 for x < 0.
        let phi = if x >= 0.0 { 1.0 - 0.5 * e } else { 0.5 * e };
        *v = x * phi;
    }
}

/// Coefficients of P in `erfc(z) ≈ t · exp(-z² + P(t))`, `t = 1/(1 + z/2)`, `z ∈ [0, 10]`: a
/// degree-9 Chebyshev interpolant of `ln(erfc(z)/t) + z²` in `t`, written in powers of `t`
/// (lowest first). Its relative error in float64 is below 6e-8; in float32 the rounding of
/// `-z² + P(t)` dominates (about 1e-6 relative at z = 3, where erfc(z) is 2e-5).
const ERFC_P: [f32; 10] = [
    -1.265_454_9,
    0.998_782_46,
    0.385_283_62,
    0.041_395_962,
    -0.019_507_999,
    -0.039_866_325,
    -0.746_469_86,
    1.195_327_6,
    -0.697_536_6,
    0.148_046_05,
];

/// erfc(z) for z ≥ 0 (negative arguments are treated as 0; from z ≈ 9.3 on the result is 0, as
/// erfc(9.3) is already below the smallest normal float). Branch-free, so loops over it
/// vectorise.
#[inline(always)]
pub fn erfc(z: f32) -> f32 {
    let z = z.clamp(0.0, 10.0);
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = ERFC_P[9];
    for &c in ERFC_P[..9].iter().rev() {
        p = p * t + c;
    }
    t * exp(-z * z + p)
}

/// e^x in float32 (relative error about 2e-7). Below -87.3 the result is 0 (instead of a
/// subnormal), above 88.7 it stays at about 3.4e38 (instead of overflowing to infinity).
/// Branch-free: `x = n·ln2 + r` with `|r| ≤ ln2/2`, e^r by its Taylor series to degree 7
/// (truncation error below 6e-9), and 2^n put straight into the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75; // ln 2 with its low mantissa bits cleared
    const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 - LN2_HI
                                        // Adding 1.5·2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -87.3;
    let x = x.clamp(-87.3, 88.7);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // n ∈ [-126, 128]; for n = 128, 2^127 · (2·p) overflows to +inf only when x > 88.72, which
    // the clamp excludes.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let half = n_int >> 1;
    let scale_a = f32::from_bits((half.wrapping_add(127) as u32) << 23);
    let scale_b = f32::from_bits((n_int.wrapping_sub(half).wrapping_add(127) as u32) << 23);
    let e = p * scale_a * scale_b;
    if underflow {
        0.0
    } else {
        e
    }
}

/// Mean of the rows of `rows` (each `out.len()` wide), then scaled to unit L2 norm, written to
/// `out`. Accumulates in float64. With no rows, or a zero mean, `out` is all zeros.
pub fn mean_pool_normalise(rows: &[f32], out: &mut [f32]) {
    let width = out.len();
    assert!(
        width > 0 && rows.len().is_multiple_of(width),
        "pooling input"
    );
    let mut acc = vec![0f64; width];
    let mut count = 0usize;
    for row in rows.chunks_exact(width) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += f64::from(*v);
        }
        count += 1;
    }
    if count == 0 {
        out.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let n = count as f64;
    acc.iter_mut().for_each(|a| *a /= n);
    let norm = acc.iter().map(|a| a * a).sum::<f64>().sqrt();
    // sentence-transformers' Normalize divides by max(norm, 1e-12).
    let inv = 1.0 / norm.max(1e-12);
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = (a * inv) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erfc64(x: f64) -> f64 {
        // Reference by numerical integration: erfc(x) = 2/√π ∫_x^∞ e^{-t²} dt (Simpson, fine grid).
        let upper = x + 12.0;
        let steps = 200_000;
        let h = (upper - x) / steps as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(x) + f(upper);
        for i in 1..steps {
            let t = x + i as f64 * h;
            s += if i % 2 == 1 { 4.0 } else { 2.0 } * f(t);
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = f64::from(exp(x));
            let want = f64::from(x).exp();
            worst = worst.max((got / want - 1.0).abs());
            x += 0.013;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert!(exp(-87.0) > 0.0);
        assert!(exp(1000.0).is_finite());
        assert!(exp(f32::NAN).is_nan() || exp(f32::NAN).is_finite());
    }

    #[test]
    fn erfc_is_accurate() {
        for i in 0..=40 {
            let z = i as f64 * 0.1;
            let want = erfc64(z);
            let got = f64::from(erfc(z as f32));
            assert!(
                (got / want - 1.0).abs() < 3e-6,
                "erfc({z}) = {got}, want {want}"
            );
        }
        assert_eq!(erfc(-1.0), erfc(0.0));
        assert_eq!(erfc(50.0), 0.0);
    }

    #[test]
    fn gelu_matches_definition() {
        let xs: Vec<f32> = (-60..=60).map(|i| i as f32 * 0.1).collect();
        let mut got = xs.clone();
        gelu(&mut got);
        for (x, g) in xs.iter().zip(&got) {
            let x = f64::from(*x);
            let want = if x < 0.0 {
                x * 0.5 * erfc64(-x / std::f64::consts::SQRT_2)
            } else {
                x * (1.0 - 0.5 * erfc64(x / std::f64::consts::SQRT_2))
            };
            assert!(
                (f64::from(*g) - want).abs() <= 1e-6 * x.abs().max(1e-3),
                "gelu({x}) = {g}, want {want}"
            );
        }
        let mut big = [1e30f32, -1e30, 0.0];
        gelu(&mut big);
        assert_eq!(big, [1e30, -0.0, 0.0]);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut row = [1.0f32, 2.0, 3.0, -1e30];
        softmax(&mut row);
        let e = [(-2.0f64).exp(), (-1.0f64).exp(), 1.0];
        let s: f64 = e.iter().sum();
        for (got, want) in row.iter().zip(e.iter().map(|v| v / s)) {
            assert!((f64::from(*got) - want).abs() < 1e-6);
        }
        assert!(row[3] < 1e-30);
        let mut nan = [f32::INFINITY, 1.0];
        softmax(&mut nan);
        assert_eq!(nan, [0.5, 0.5]);
    }

    #[test]
    fn layer_norm_standardises_rows() {
        let mut x = vec![1.0f32, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0];
        let res = vec![0.0f32; 8];
        let gamma = [1.0f32, 1.0, 2.0, 1.0];
        let beta = [0.0f32, 0.0, 0.0, 0.5];
        add_layer_norm(&mut x, &res, &gamma, &beta, 1e-12);
        // Row 1: mean 2.5, biased variance 1.25.
        let s = 1.25f32.sqrt();
        let want = [-1.5 / s, -0.5 / s, 2.0 * 0.5 / s, 1.5 / s + 0.5];
        for (g, w) in x[..4].iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        // Row 2 is constant: it normalises to beta.
        assert_eq!(&x[4..], &beta);
    }

    #[test]
    fn matmul_adds_bias() {
        // [1 2; 3 4; 5 6] · [1 0 2; 0 1 3] + [10 20 30]
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0f32, 0.0, 2.0, 0.0, 1.0, 3.0];
        let bias = [10.0f32, 20.0, 30.0];
        let mut out = [0f32; 9];
        matmul_bias(&mut out, &a, &w, &bias, (3, 2, 3), 1);
        assert_eq!(out, [11.0, 22.0, 38.0, 13.0, 24.0, 48.0, 15.0, 26.0, 58.0]);
    }

    #[test]
    fn matmul_follows_strides() {
        // a = rows 0 and 2 of a 3 × 2 matrix; b = the transpose of a 2 × 2 stored row-major;
        // dst = the first two columns of a 2 × 3 buffer.
        let a = [1.0f32, 2.0, 9.0, 9.0, 3.0, 4.0];
        let b = [1.0f32, 3.0, 2.0, 4.0]; // bᵀ = [1 3; 2 4] → b = [1 2; 3 4]
        let mut dst = [7.0f32; 6];
        matmul(
            ViewMut::new(&mut dst, (2, 2), 3),
            View::new(&a, (2, 2), (4, 1)),
            View::new(&b, (2, 2), (1, 2)),
            0.5,
            false,
            1,
        );
        // [1 2; 3 4] · [1 2; 3 4] = [7 10; 15 22], halved.
        assert_eq!(dst, [3.5, 5.0, 7.0, 7.5, 11.0, 7.0]);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn views_are_bounds_checked() {
        let a = [0f32; 5];
        View::new(&a, (2, 3), (3, 1));
    }

    #[test]
    fn pooling_is_mean_then_unit_norm() {
        let rows = [1.0f32, 0.0, 3.0, 4.0];
        let mut out = [0f32; 2];
        mean_pool_normalise(&rows, &mut out);
        // Mean (2, 2) → (1/√2, 1/√2).
        assert!((out[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-7);
        assert!((out[1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-7);
        let mut zero = [1f32; 2];
        mean_pool_normalise(&[0.0, 0.0], &mut zero);
        assert_eq!(zero, [0.0, 0.0]);
        mean_pool_normalise(&[], &mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}

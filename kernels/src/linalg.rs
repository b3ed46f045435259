//! The dense-matrix helpers the kernels share: products through the `gemm` crate (of whole
//! row-major matrices, of views into slices, of a band of columns transposed), all through one
//! call with explicit strides, and a cache-blocked transpose.

use gemm::Parallelism;

/// `dst = a · b`, or `dst += a · b` when `accumulate`, all row-major: `[m, k, n]` are the
/// dimensions, `a` is `[m, k]` (stored `[k, m]` when its flag says transposed), `b` is `[k, n]`
/// (stored `[n, k]` when transposed), `dst` is `[m, n]`. `parallel` lets gemm use every core (for
/// one large product; a loop that is already split between threads passes false).
///
/// gemm computes a row-major `dst` transposed, so its 64-row tile runs along `n`; it reads a
/// `b` stored `[n, k]` by packing it with one scalar load per float, which can cost more than
/// the product: callers keep `b` row-major where it matters.
pub(crate) fn matmul(
    [m, k, n]: [usize; 3],
    (a, a_transposed): (&[f32], bool),
    (b, b_transposed): (&[f32], bool),
    dst: &mut [f32],
    accumulate: bool,
    parallel: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && dst.len() >= m * n);
    let parallelism = if parallel { Parallelism::Rayon(0) } else { Parallelism::None };
    let (a_rs, a_cs) = if a_transposed { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if b_transposed { (1, k) } else { (n, 1) };
    // SAFETY: the assert above keeps every index the strides reach inside the slices.
    unsafe {
        gemm_strided(
            [m, k, n],
            (a.as_ptr(), a_rs, a_cs),
            (b.as_ptr(), b_rs, b_cs),
            (dst.as_mut_ptr(), n),
            accumulate,
            parallelism,
        )
    }
}

/// `dst = a · b` (`dst += a · b` when `accumulate`) through gemm, `[m, k, n]` the dimensions,
/// `a` and `b` each a pointer with its row and column strides, `dst` a pointer with its row
/// stride (its columns one apart).
///
/// # Safety
/// Every index the dimensions and strides reach must lie inside the operands' allocations.
unsafe fn gemm_strided(
    [m, k, n]: [usize; 3],
    (a, a_rs, a_cs): (*const f32, usize, usize),
    (b, b_rs, b_cs): (*const f32, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    parallelism: Parallelism,
) {
    // SAFETY: the caller keeps every index inside the allocations.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a,
            a_cs as isize,
            a_rs as isize,
            b,
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `src` (`[rows, cols]`, row-major) into `dst` as `[cols, rows]`, in cache-sized tiles.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 32;
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// `dst = aᵀ · b` on the calling thread, where `a` is columns `cols` of a row-major `[k, lda]`
/// matrix (so `aᵀ` is `[cols.len(), k]`), `b` is row-major `[k, n]` and `dst` `[cols.len(), n]`.
pub(crate) fn matmul_columns_transposed(
    (a, lda, cols): (&[f32], usize, std::ops::Range<usize>),
    (b, n): (&[f32], usize),
    dst: &mut [f32],
) {
    let (m, k) = (cols.len(), b.len() / n.max(1));
    assert!(cols.end <= lda && a.len() >= k * lda && b.len() == k * n && dst.len() == m * n);
    if m == 0 || k == 0 {
        return dst.fill(0.0);
    }
    // SAFETY: the assert above keeps every index the strides reach inside the slices.
    unsafe {
        let a = (a.as_ptr().add(cols.start), 1, lda);
        gemm_strided([m, k, n], a, (b.as_ptr(), n, 1), (dst.as_mut_ptr(), n), false, Parallelism::None)
    }
}

/// A matrix inside a slice: `rows × cols` values from `offset`, rows `row_stride` apart and
/// columns one apart (a row of a padded image, a channel of a batch, a window into either).
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
}

impl View {
    /// A whole row-major `[rows, cols]` matrix.
    pub fn dense(rows: usize, cols: usize) -> Self {
        Self { offset: 0, rows, cols, row_stride: cols }
    }

    /// One past the last value it reaches.
    fn end(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            self.offset
        } else {
            self.offset + (self.rows - 1) * self.row_stride + self.cols
        }
    }
}

/// `dst = a · b`, or `dst += a · b` when `accumulate`, over [`View`]s of three slices, on the
/// calling thread.
pub(crate) fn matmul_views(
    (a, av): (&[f32], View),
    (b, bv): (&[f32], View),
    (dst, dv): (&mut [f32], View),
    accumulate: bool,
) {
    assert!(av.cols == bv.rows && dv.rows == av.rows && dv.cols == bv.cols, "{av:?} · {bv:?} -> {dv:?}");
    assert!(av.end() <= a.len() && bv.end() <= b.len() && dv.end() <= dst.len());
    // SAFETY: the asserts above keep every index the strides reach inside the slices.
    unsafe {
        gemm_strided(
            [dv.rows, av.cols, dv.cols],
            (a.as_ptr().add(av.offset), av.row_stride, 1),
            (b.as_ptr().add(bv.offset), bv.row_stride, 1),
            (dst.as_mut_ptr().add(dv.offset), dv.row_stride),
            accumulate,
            Parallelism::None,
        )
    }
}

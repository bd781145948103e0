//! `C = A·B (+ C)` on row-major f32 buffers, through `matrixmultiply` (runtime-detected
//! AVX2/FMA kernel, threaded over the machine's physical cores). A transposed operand is the
//! same buffer read with swapped strides, so no copy is made.

/// A read-only [rows, cols] view of a row-major buffer, possibly transposed.
#[derive(Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// `data` as a row-major [rows, cols] matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "gemm view: wrong length");
        View { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// Whether every element (i, j) lies inside `data`: what makes the sgemm call sound.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }

    /// The transpose: [cols, rows].
    pub fn t(self) -> Self {
        View { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

/// c [a.rows, b.cols] (row-major) = a·b, or c += a·b with `accumulate`.
pub fn gemm(a: View, b: View, c: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert_eq!(c.len(), m * n, "gemm: c must be [a.rows, b.cols]");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    assert!(a.in_bounds() && b.in_bounds());
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: every element of a and b lies inside their slices (checked above), and c is a
    // distinct, exclusively borrowed [m, n] buffer.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

//! Walking strided layouts: row offsets and gathers, shared by the elementwise, reduce and copy
//! kernels. A "row" is the innermost dim; kernels loop rows outside and elements inside, with a
//! memcpy fast path for unit stride.

use crate::pool::{self, Poolable};
use kiln_core::Layout;

/// Storage offset of the first element of every row (all dims but the last), in row-major order.
/// For a rank-0 layout: one row of one element.
pub fn row_starts(l: &Layout) -> Vec<usize> {
    let r = l.rank();
    if r == 0 {
        return vec![l.offset()];
    }
    let outer = Layout::new(l.shape()[..r - 1].to_vec(), l.strides()[..r - 1].to_vec(), l.offset());
    if l.shape()[r - 1] == 0 {
        return Vec::new();
    }
    outer.offsets().collect()
}

/// (length, stride) of the innermost dim (1, 1 for a scalar).
pub fn inner(l: &Layout) -> (usize, usize) {
    match l.rank() {
        0 => (1, 1),
        r => (l.shape()[r - 1], l.strides()[r - 1]),
    }
}

/// Copies the elements of `l` from `src` into `dst` (row-major, `dst.len() == l.numel()`).
pub fn gather_into<T: Copy>(src: &[T], l: &Layout, dst: &mut [T]) {
    if let Some((a, b)) = l.contiguous_range() {
        dst.copy_from_slice(&src[a..b]);
        return;
    }
    let (n, s) = inner(l);
    for (row, start) in row_starts(l).into_iter().enumerate() {
        let out = &mut dst[row * n..(row + 1) * n];
        if s == 1 {
            out.copy_from_slice(&src[start..start + n]);
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                *o = src[start + j * s];
            }
        }
    }
}

/// The elements of `l` as a new contiguous vector.
pub fn gather<T: Poolable>(src: &[T], l: &Layout) -> Vec<T> {
    let mut v = pool::take(l.numel());
    gather_into(src, l, &mut v);
    v
}

/// Writes `src` (row-major, `l.numel()` elements) into `dst` at the positions of `l`.
pub fn scatter_from<T: Copy>(dst: &mut [T], l: &Layout, src: &[T]) {
    if let Some((a, b)) = l.contiguous_range() {
        dst[a..b].copy_from_slice(src);
        return;
    }
    let (n, s) = inner(l);
    for (row, start) in row_starts(l).into_iter().enumerate() {
        let inp = &src[row * n..(row + 1) * n];
        for (j, &x) in inp.iter().enumerate() {
            dst[start + j * s] = x;
        }
    }
}

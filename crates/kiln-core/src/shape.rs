//! Shapes, strides and views.
//!
//! A [`Layout`] is (shape, strides, offset) in elements over a flat storage: reshape of a contiguous
//! tensor, transpose/permute, narrow and broadcast only change the layout, never the data
//! (PyTorch's view semantics). Strides of broadcast dims are 0.

use crate::{Error, Result};

/// Row-major (C-order) strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i];
    }
    strides
}

/// Number of elements of `shape` (1 for a scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Resolves a possibly negative dim (`-1` = last) against `rank`.
pub fn resolve_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let d = if dim < 0 { dim + rank as isize } else { dim };
    if d < 0 || d as usize >= rank {
        return Err(Error::DimOutOfRange { op, dim, rank });
    }
    Ok(d as usize)
}

/// NumPy broadcasting: the shape both `a` and `b` broadcast to.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() { 1 } else { a[i - (rank - a.len())] };
        let db = if i < rank - b.len() { 1 } else { b[i - (rank - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(Error::Broadcast { op, lhs: a.to_vec(), rhs: b.to_vec() }),
        };
    }
    Ok(out)
}

/// Shape, strides (in elements) and starting offset of a tensor view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// A contiguous row-major layout starting at 0.
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: 0 }
    }

    /// A layout from explicit parts (no validation against a storage size).
    pub fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Layout {
        Layout { shape, strides, offset }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The strides in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Offset of element 0 in the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Whether a rank-4 (B, H, S, D) layout is *head-strided*: every (b, h) block of S·D
    /// elements contiguous and the blocks evenly spaced, `hs ≥ S·D` apart in (b, h) order — a
    /// contiguous tensor, or the first S of `max` positions of a (B, H, max, D) buffer. Returns
    /// the block distance `hs`.
    pub fn head_strided(&self) -> Option<usize> {
        let (sh, st) = (self.shape(), self.strides());
        let &[b, h, s, d] = sh else { return None };
        if self.is_contiguous() {
            return Some(s * d);
        }
        let inner = (d <= 1 || st[3] == 1) && (s <= 1 || st[2] == d);
        let hs = if h > 1 {
            st[1]
        } else if b > 1 {
            st[0]
        } else {
            s * d
        };
        (inner && hs >= s * d && (b <= 1 || h <= 1 || st[0] == h * hs)).then_some(hs)
    }

    /// [`Layout::head_strided`] as a predicate.
    pub fn is_head_strided(&self) -> bool {
        self.head_strided().is_some()
    }

    /// True when the elements are laid out row-major without gaps (offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != acc {
                return false;
            }
            acc *= self.shape[i];
        }
        true
    }

    /// The `[start, end)` storage range of a contiguous layout, `None` otherwise.
    pub fn contiguous_range(&self) -> Option<(usize, usize)> {
        self.is_contiguous().then(|| (self.offset, self.offset + self.numel()))
    }

    /// Reshape; only valid on a contiguous layout (callers copy first otherwise).
    pub fn reshape(&self, shape: &[usize]) -> Result<Layout> {
        if numel(shape) != self.numel() {
            return Err(Error::BadShape {
                op: "reshape",
                shape: self.shape.clone(),
                msg: format!("cannot reshape {} elements into {:?}", self.numel(), shape),
            });
        }
        if !self.is_contiguous() {
            return Err(Error::BadShape {
                op: "reshape",
                shape: self.shape.clone(),
                msg: "layout is not contiguous".into(),
            });
        }
        Ok(Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: self.offset })
    }

    /// Reorders dims: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::BadShape {
                op: "permute",
                shape: self.shape.clone(),
                msg: format!("{perm:?} is not a permutation of 0..{rank}"),
            });
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// Swaps two dims.
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Layout> {
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        if d0 >= self.rank() || d1 >= self.rank() {
            return Err(Error::DimOutOfRange { op: "transpose", dim: d0.max(d1) as isize, rank: self.rank() });
        }
        perm.swap(d0, d1);
        self.permute(&perm)
    }

    /// Elements `start..start+len` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        if dim >= self.rank() {
            return Err(Error::DimOutOfRange { op: "narrow", dim: dim as isize, rank: self.rank() });
        }
        if start + len > self.shape[dim] {
            return Err(Error::BadShape {
                op: "narrow",
                shape: self.shape.clone(),
                msg: format!("range {start}..{} exceeds dim {dim}", start + len),
            });
        }
        let mut shape = self.shape.clone();
        shape[dim] = len;
        Ok(Layout { shape, strides: self.strides.clone(), offset: self.offset + start * self.strides[dim] })
    }

    /// Broadcast view to `shape` (dims of size 1, and new leading dims, get stride 0).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Layout> {
        let err = || Error::Broadcast { op: "broadcast_as", lhs: self.shape.clone(), rhs: shape.to_vec() };
        if shape.len() < self.rank() {
            return Err(err());
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for i in 0..self.rank() {
            let (have, want) = (self.shape[i], shape[lead + i]);
            strides[lead + i] = if have == want {
                self.strides[i]
            } else if have == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout { shape: shape.to_vec(), strides, offset: self.offset })
    }

    /// Storage offsets of every element in row-major order (for strided kernels).
    pub fn offsets(&self) -> StridedOffsets<'_> {
        StridedOffsets {
            layout: self,
            index: vec![0; self.rank()],
            next: if self.numel() == 0 { None } else { Some(self.offset) },
        }
    }
}

/// Iterator over the storage offsets of a [`Layout`] in row-major element order.
pub struct StridedOffsets<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    next: Option<usize>,
}

impl Iterator for StridedOffsets<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let cur = self.next?;
        let (shape, strides) = (&self.layout.shape, &self.layout.strides);
        let mut pos = cur;
        let mut d = shape.len();
        loop {
            if d == 0 {
                self.next = None;
                break;
            }
            d -= 1;
            self.index[d] += 1;
            pos += strides[d];
            if self.index[d] < shape[d] {
                self.next = Some(pos);
                break;
            }
            pos -= strides[d] * shape[d];
            self.index[d] = 0;
        }
        Some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_views() {
        let l = Layout::contiguous(&[2, 3, 4]);
        assert_eq!(l.strides(), &[12, 4, 1]);
        let t = l.transpose(0, 2).unwrap();
        assert_eq!(t.shape(), &[4, 3, 2]);
        assert!(!t.is_contiguous());
        let offs: Vec<usize> = l.narrow(1, 1, 2).unwrap().offsets().take(5).collect();
        assert_eq!(offs, vec![4, 5, 6, 7, 8]);
        let b = Layout::contiguous(&[3, 1]).broadcast_as(&[2, 3, 4]).unwrap();
        let offs: Vec<usize> = b.offsets().take(9).collect();
        assert_eq!(offs, vec![0, 0, 0, 0, 1, 1, 1, 1, 2]);
        assert!(broadcast_shapes("t", &[2, 1, 4], &[3, 1]).unwrap() == vec![2, 3, 4]);
        assert!(broadcast_shapes("t", &[2, 3], &[4]).is_err());
    }
}

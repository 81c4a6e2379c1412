//! Allocation, host transfer, copies and dtype conversion.

use super::{not_impl, BoxStorage, Storage};
use crate::{DType, HostData, Layout, Result};

/// Memory kernels.
pub trait MemoryOps {
    /// A zero-filled buffer of `len` elements.
    fn zeros(&self, dtype: DType, len: usize) -> Result<BoxStorage>;
    /// A buffer filled with `value` (converted to `dtype`).
    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<BoxStorage>;
    /// Uploads host data.
    #[allow(clippy::wrong_self_convention)]
    fn from_host(&self, data: HostData) -> Result<BoxStorage>;
    /// Downloads the elements of `layout` (row-major order) to the host.
    fn to_host(&self, s: &dyn Storage, layout: &Layout) -> Result<HostData>;
    /// A contiguous copy of the elements of `layout`.
    fn copy_strided(&self, s: &dyn Storage, layout: &Layout) -> Result<BoxStorage>;
    /// Converts the elements of `layout` to `dtype` (contiguous result).
    fn to_dtype(&self, s: &dyn Storage, layout: &Layout, dtype: DType) -> Result<BoxStorage>;
    /// Copies `src` (viewed by `src_layout`) into `dst` at the positions of `dst_layout`; shapes
    /// must match. The primitive under concat, slice assignment and in-place parameter updates.
    fn copy_into(
        &self,
        dst: &mut dyn Storage,
        dst_layout: &Layout,
        src: &dyn Storage,
        src_layout: &Layout,
    ) -> Result<()> {
        let _ = (dst, dst_layout, src, src_layout);
        not_impl("copy_into", "?")
    }
}

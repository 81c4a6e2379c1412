//! The backend trait: where tensor storage lives and where kernels run.
//!
//! A backend (CPU in `kiln-cpu`, CUDA in `kiln-cuda`) implements [`Backend`], which is split by
//! concern into the sub-traits of this module. Every kernel takes storages plus their [`Layout`]s
//! and returns a new, contiguous storage; layers and models never touch host slices: they call
//! [`crate::Tensor`] methods, which dispatch through the tensor's [`Device`].
//!
//! Kernels a backend lacks return [`crate::Error::NotImplemented`] (the default bodies), so a new
//! backend can grow op by op.

mod elementwise;
mod fused;
mod index;
mod matmul;
mod memory;
mod optim;
mod random;
mod reduce;

pub use elementwise::{BinaryOp, CmpOp, ElementwiseOps, UnaryOp};
pub use fused::{AttentionArgs, AttentionDims, FusedOps, PagedAttentionArgs};
pub use index::IndexOps;
pub use matmul::MatmulOps;
pub use memory::MemoryOps;
pub use optim::{AdamWStep, OptimOps};
pub use random::RandomOps;
pub use reduce::{ReduceOp, ReduceOps};

use crate::{DType, Layout};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A backend's buffer of elements of one dtype. Downcast with [`Storage::as_any`] inside the
/// backend that made it.
pub trait Storage: Any + Send + Sync + fmt::Debug {
    /// Element type.
    fn dtype(&self) -> DType;
    /// Number of elements.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// For downcasting by the owning backend.
    fn as_any(&self) -> &dyn Any;
    /// For downcasting by the owning backend (in-place updates).
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A kernel argument: a storage viewed through a layout.
pub type Arg<'a> = (&'a dyn Storage, &'a Layout);

/// A boxed storage, as kernels return it.
pub type BoxStorage = Box<dyn Storage>;

/// Everything a device can do; implemented by each backend.
pub trait Backend:
    MemoryOps
    + ElementwiseOps
    + ReduceOps
    + MatmulOps
    + FusedOps
    + IndexOps
    + RandomOps
    + OptimOps
    + Send
    + Sync
    + fmt::Debug
{
    /// Short name (`cpu`, `cuda:0`).
    fn name(&self) -> &'static str;
    /// For downcasting to the concrete backend (a backend's own extensions, e.g. NCCL
    /// collectives on the CUDA backend's stream).
    fn as_any(&self) -> &dyn Any;
    /// Waits for queued work to finish (no-op on CPU).
    fn synchronize(&self) -> crate::Result<()> {
        Ok(())
    }
}

/// A handle to a backend instance; cheap to clone. Tensors carry one.
#[derive(Clone)]
pub struct Device(Arc<dyn Backend>);

impl Device {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn Backend>) -> Device {
        Device(backend)
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.0.as_ref()
    }

    /// The backend's name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// True when both handles point at the same backend instance.
    pub fn same(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.name() == other.name()
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name())
    }
}

/// Shorthand for the [`crate::Error::NotImplemented`] default bodies.
pub(crate) fn not_impl<T>(op: &'static str, backend: &'static str) -> crate::Result<T> {
    Err(crate::Error::NotImplemented { op, backend })
}

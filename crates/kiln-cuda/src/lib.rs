//! # kiln-cuda
//!
//! The CUDA backend: [`CudaBackend`] implements every kernel of [`kiln_core::backend::Backend`]
//! on an NVIDIA GPU. Nothing of CUDA is needed to build it: `cudarc` opens the driver, NVRTC and
//! cuBLAS libraries at run time, and the kernels (CUDA C in `crates/kiln-cuda/kernels/`, one file
//! per concern, forward and backward side by side) are compiled by NVRTC for the GPU found.
//!
//! - GEMMs: cuBLAS `GemmStridedBatchedEx` (f32, or TF32 with `KILN_CUDA_TF32=1`; f16/bf16 inputs
//!   with f32 accumulation); transposed operands are read in place.
//! - Fused kernels: LayerNorm/RMSNorm forward+backward, softmax, softmax-cross-entropy, RoPE,
//!   embedding gather/scatter-add, AdamW, FlashAttention-2-style attention forward and backward
//!   (causal, additive mask, GQA, dropout), paged attention over f32/f16/bf16/int8 caches.
//! - Random fills use kiln-cpu's counter-based generator: the same seed initialises the same model.
//! - Data parallelism: [`NcclComm`] averages gradients across processes with NCCL.
//!
//! ```no_run
//! let dev = kiln_cuda::cuda(0)?; // fails with a clear error when no GPU/driver is present
//! let x = kiln_core::Tensor::randn(&[2, 3], 0.0, 1.0, kiln_core::DType::F32, 7, &dev)?;
//! # Ok::<(), kiln_core::Error>(())
//! ```

mod backend;
pub mod kernels;
pub mod nccl;
mod ops;
mod storage;

pub use backend::{cuda, is_available, CudaBackend};
pub use nccl::NcclComm;
pub use storage::CudaStorage;

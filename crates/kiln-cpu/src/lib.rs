//! # kiln-cpu
//!
//! The CPU backend: [`CpuBackend`] implements every kernel of [`kiln_core::backend::Backend`] for
//! `f32` (and `f64`, used by the gradient checks). Matmuls go to the `gemm` crate (AVX-512 with the
//! `x86-v4` feature), everything else is hand-written and parallelised with `rayon` over
//! independent rows. Thread count = physical cores, overridden by `KILN_NUM_THREADS`.

mod kernels;
pub mod pool;
mod storage;

pub use storage::CpuStorage;

use kiln_core::backend::Backend;
use kiln_core::Device;
use std::sync::{Arc, OnceLock};

/// The CPU backend (stateless; one shared instance behind [`cpu`]).
#[derive(Debug, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Number of worker threads kiln uses on the CPU: `KILN_NUM_THREADS` if set to a positive
/// integer, else the number of physical cores.
pub fn num_threads() -> usize {
    std::env::var("KILN_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(num_cpus::get_physical)
        .max(1)
}

/// The shared CPU device. The first call sizes rayon's global pool to [`num_threads`] (unless the
/// application built the pool itself).
pub fn cpu() -> Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| {
        // Ignore the error: the application may have configured the global pool already.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(num_threads()).build_global();
        Device::new(Arc::new(CpuBackend))
    })
    .clone()
}

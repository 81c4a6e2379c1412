//! [`CudaBackend`]: one device, one stream, the compiled kernel module and a cuBLAS handle, plus
//! the helpers every kernel wrapper uses (downcasts, allocation, launch geometry, layouts).

use crate::kernels;
use crate::storage::CudaStorage;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, DriverError};
use kiln_core::backend::{Backend, BoxStorage, Storage};
use kiln_core::{DType, Device, Error, Layout, Result};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The CUDA backend for one GPU. Every kernel is queued on one stream, in order; host transfers
/// synchronise it. Compute dtype: `F32` (`F16`/`BF16` are storage types: casts and GEMM inputs).
pub struct CudaBackend {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) blas: CudaBlas,
    funcs: HashMap<&'static str, CudaFunction>,
    name: &'static str,
    /// Run f32 GEMMs on TF32 tensor cores (`KILN_CUDA_TF32=1`), as PyTorch's
    /// `allow_tf32`; off by default for exact fp32 parity with the CPU.
    pub(crate) tf32: bool,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaBackend({})", self.name)
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        self.name
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| self.err("synchronize", e))
    }
}

/// True when the CUDA driver library can be opened and reports at least one device.
pub fn is_available() -> bool {
    // SAFETY: only tries to dlopen the driver library by its usual names.
    if !unsafe { sys::is_culib_present() } {
        return false;
    }
    CudaContext::device_count().map(|n| n > 0).unwrap_or(false)
}

/// The kiln [`Device`] for GPU `ordinal`: opens the driver, compiles the kernels with NVRTC for
/// the GPU's compute capability and creates a cuBLAS handle. Fails with a clear message when a
/// library or the GPU is missing.
pub fn cuda(ordinal: usize) -> Result<Device> {
    Ok(Device::new(Arc::new(CudaBackend::new(ordinal)?)))
}

fn backend_err(op: &'static str, msg: impl fmt::Display) -> Error {
    Error::Backend { backend: "cuda", op, msg: msg.to_string() }
}

impl CudaBackend {
    /// See [`cuda`].
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        // SAFETY: only tries to dlopen the driver library by its usual names.
        if !unsafe { sys::is_culib_present() } {
            return Err(backend_err("init", "the CUDA driver library (libcuda.so) was not found: no NVIDIA driver"));
        }
        let count = CudaContext::device_count().map_err(|e| backend_err("init", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(backend_err("init", format!("GPU {ordinal} requested, {count} present")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| backend_err("init", e))?;
        // One stream, in-order: cudarc's per-buffer event tracking is not needed.
        // SAFETY: called before any allocation on this context.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        keep_pool_memory(&ctx)?;
        let (major, minor) = ctx.compute_capability().map_err(|e| backend_err("init", e))?;
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        let ptx = kernels::compile_ptx(arch)?;
        let module = ctx.load_module(ptx).map_err(|e| backend_err("load kernels", e))?;
        let mut funcs = HashMap::new();
        for name in kernels::entries() {
            let f = module.load_function(name).map_err(|e| backend_err("load kernels", format!("{name}: {e}")))?;
            funcs.insert(name, f);
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| backend_err("cublas init", e))?;
        let tf32 = std::env::var("KILN_CUDA_TF32").is_ok_and(|v| v == "1");
        let name: &'static str = Box::leak(format!("cuda:{ordinal}").into_boxed_str());
        Ok(CudaBackend { ctx, stream, blas, funcs, name, tf32 })
    }

    /// The GPU's name, as the driver reports it.
    pub fn device_name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "unknown GPU".into())
    }

    /// Makes this backend's context current on the calling thread (cudarc does so for its own
    /// calls; raw cuBLAS and driver calls need it too — the server calls from several threads).
    pub(crate) fn bind(&self, op: &'static str) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| self.err(op, e))
    }

    pub(crate) fn err(&self, op: &'static str, e: DriverError) -> Error {
        backend_err(op, e)
    }

    pub(crate) fn func(&self, name: &'static str) -> Result<&CudaFunction> {
        self.funcs.get(name).ok_or_else(|| backend_err("launch", format!("no kernel named {name}")))
    }

    /// A buffer of `len` elements of `dtype`, uninitialised.
    pub(crate) fn alloc(&self, dtype: DType, len: usize) -> Result<CudaStorage> {
        let bytes = (len * dtype.size_in_bytes()).max(1);
        // SAFETY: every kernel that receives a fresh buffer writes all `len` elements before any read.
        let buf = unsafe { self.stream.alloc::<u8>(bytes) }.map_err(|e| self.err("alloc", e))?;
        Ok(CudaStorage { buf, dtype, len })
    }

    /// A zero-filled buffer.
    pub(crate) fn alloc_zeros(&self, dtype: DType, len: usize) -> Result<CudaStorage> {
        let bytes = (len * dtype.size_in_bytes()).max(1);
        let buf = self.stream.alloc_zeros::<u8>(bytes).map_err(|e| self.err("alloc", e))?;
        Ok(CudaStorage { buf, dtype, len })
    }

    /// Device address of element `offset` of `s`.
    pub(crate) fn ptr(&self, s: &CudaStorage, offset: usize) -> u64 {
        let (p, _sync) = s.buf.device_ptr(&self.stream);
        p + (offset * s.dtype.size_in_bytes()) as u64
    }

    pub(crate) fn slice_ptr<T>(&self, s: &CudaSlice<T>) -> u64 {
        let (p, _sync) = s.device_ptr(&self.stream);
        p
    }
}

/// The caching allocator: buffers come from the device's stream-ordered memory pool
/// (`cuMemAllocAsync`, which cudarc uses when the device supports it); raising the pool's
/// release threshold to the maximum keeps freed memory in the pool for reuse instead of
/// returning it to the driver at every synchronisation — PyTorch's caching allocator, done by
/// the driver.
fn keep_pool_memory(ctx: &Arc<CudaContext>) -> Result<()> {
    if !ctx.has_async_alloc() {
        return Ok(());
    }
    let mut pool = std::mem::MaybeUninit::<sys::CUmemoryPool>::uninit();
    let mut threshold = u64::MAX;
    // SAFETY: plain driver calls on this context's device; `pool` is written by the first
    // before the second reads it, and `threshold` outlives the call.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(pool.as_mut_ptr(), ctx.cu_device())
            .result()
            .map_err(|e| backend_err("memory pool", e))?;
        sys::cuMemPoolSetAttribute(
            pool.assume_init(),
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
        .result()
        .map_err(|e| backend_err("memory pool", e))
    }
}

/// Downcasts a storage that must live on this backend.
pub(crate) fn cu<'a>(op: &'static str, s: &'a dyn Storage) -> Result<&'a CudaStorage> {
    s.as_any().downcast_ref::<CudaStorage>().ok_or_else(|| Error::DeviceMismatch {
        op,
        lhs: "cuda".into(),
        rhs: format!("{s:?}"),
    })
}

/// Mutable [`cu`].
pub(crate) fn cu_mut<'a>(op: &'static str, s: &'a mut dyn Storage) -> Result<&'a mut CudaStorage> {
    let desc = format!("{s:?}");
    s.as_any_mut().downcast_mut::<CudaStorage>().ok_or(Error::DeviceMismatch { op, lhs: "cuda".into(), rhs: desc })
}

/// Fails unless `s` holds `dtype`.
pub(crate) fn want(op: &'static str, s: &CudaStorage, dtype: DType) -> Result<()> {
    if s.dtype == dtype {
        Ok(())
    } else {
        Err(Error::UnsupportedDType { op, dtype: s.dtype, msg: "the CUDA kernels compute in f32" })
    }
}

pub(crate) fn boxed(s: CudaStorage) -> BoxStorage {
    Box::new(s)
}

/// `Strided` in `common.cuh`: a layout of at most 8 dims for the kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strided {
    ndim: i64,
    offset: i64,
    shape: [i64; 8],
    stride: [i64; 8],
}

// SAFETY: plain `#[repr(C)]` integers, the layout of the C struct.
unsafe impl DeviceRepr for Strided {}

impl Strided {
    pub(crate) fn of(op: &'static str, l: &Layout) -> Result<Strided> {
        if l.rank() > 8 {
            return Err(Error::BadShape {
                op,
                shape: l.shape().to_vec(),
                msg: "the CUDA kernels take at most 8 dims".into(),
            });
        }
        let mut s = Strided { ndim: l.rank() as i64, offset: l.offset() as i64, shape: [1; 8], stride: [0; 8] };
        for (i, (&n, &st)) in l.shape().iter().zip(l.strides()).enumerate() {
            s.shape[i] = n as i64;
            s.stride[i] = st as i64;
        }
        Ok(s)
    }
}

/// Launch geometry of a grid-stride elementwise kernel over `n` items.
pub(crate) fn grid_1d(n: usize) -> cudarc::driver::LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 1 << 16) as u32;
    cudarc::driver::LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// One block per row (grid-stride over `rows`), threads a multiple of 32 up to 1024 covering `c`.
pub(crate) fn grid_rows(rows: usize, c: usize) -> cudarc::driver::LaunchConfig {
    let threads = (c.div_ceil(32) * 32).clamp(32, 1024) as u32;
    let blocks = rows.clamp(1, 1 << 16) as u32;
    cudarc::driver::LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// Launches kernel `$name` of backend `$be` with config `$cfg` and the listed arguments (each
/// bound to a local first, so temporaries live through the launch). Argument types must match
/// the kernel's C signature exactly: `i64`, `i32`, `f32`, `f64`, `u64` (device pointers), structs.
macro_rules! launch {
    ($be:expr, $name:literal, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let be = &$be;
        let f = be.func($name)?;
        use cudarc::driver::PushKernelArg as _;
        let mut b = be.stream.launch_builder(f);
        $crate::backend::launch!(@push b; $($arg),*);
        // SAFETY: the argument list follows the kernel's signature in kernels/*.cu, and every
        // pointer is a live buffer of this backend sized by the wrapper that computed it.
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(|e| be.err($name, e))
    }};
    (@push $b:ident;) => {};
    (@push $b:ident; $head:expr $(, $tail:expr)*) => {
        let v = $head;
        $b.arg(&v);
        $crate::backend::launch!(@push $b; $($tail),*);
    };
}
pub(crate) use launch;

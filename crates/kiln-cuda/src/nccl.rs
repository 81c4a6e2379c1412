//! Data parallelism over NCCL (seed 003 "data parallelism"; NVIDIA's collective library through
//! cudarc, never a home-made transport): every process drives one GPU, runs the same model on its
//! own shard of the batch, and after backward replaces each gradient by the mean over all
//! processes (`ncclAllReduce` with `ncclAvg`), so every replica takes the same optimizer step —
//! PyTorch's DistributedDataParallel without the bucketing/overlap.
//!
//! Rendezvous: rank 0 creates the NCCL unique id and writes it (atomically: temp file + rename)
//! to a file every rank can read; the others wait for it. Multi-process launch, one process per
//! GPU (see the README's "GPU (CUDA)" section):
//!
//! ```text
//! KILN_WORLD_SIZE=2 KILN_RANK=0 KILN_NCCL_ID=/tmp/run.nccl kiln --device cuda:0 train … &
//! KILN_WORLD_SIZE=2 KILN_RANK=1 KILN_NCCL_ID=/tmp/run.nccl kiln --device cuda:1 train …
//! ```

use crate::backend::{cu, CudaBackend};
use cudarc::nccl::{result, sys};
use kiln_core::{DType, Device, Error, Result, Tensor};
use std::path::Path;
use std::time::{Duration, Instant};

fn nccl_err(op: &'static str, msg: impl std::fmt::Display) -> Error {
    Error::Backend { backend: "nccl", op, msg: msg.to_string() }
}

/// One process's member of an NCCL communicator, bound to a CUDA device's stream.
pub struct NcclComm {
    comm: sys::ncclComm_t,
    device: Device,
    rank: usize,
    world_size: usize,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls are not concurrent;
// kiln issues them from the training loop only, and the handle is destroyed once, in Drop.
unsafe impl Send for NcclComm {}
// SAFETY: as above.
unsafe impl Sync for NcclComm {}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NcclComm(rank {} of {} on {})", self.rank, self.world_size, self.device.name())
    }
}

/// True when the NCCL library can be opened.
pub fn nccl_available() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// The id file's text: the 128 bytes of an `ncclUniqueId` in hex.
pub fn encode_id(id: &[std::ffi::c_char; 128]) -> String {
    id.iter().map(|&c| format!("{:02x}", c as u8)).collect()
}

/// Inverse of [`encode_id`]; a clear error for anything but 256 hex digits.
pub fn decode_id(text: &str) -> Result<[std::ffi::c_char; 128]> {
    let t = text.trim();
    let bad = || nccl_err("rendezvous", format!("the id file holds {} characters, not 256 hex digits", t.len()));
    if t.len() != 256 || !t.is_ascii() {
        return Err(bad());
    }
    let mut id = [0 as std::ffi::c_char; 128];
    for (i, o) in id.iter_mut().enumerate() {
        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| bad())? as std::ffi::c_char;
    }
    Ok(id)
}

/// Rank 0 writes a fresh id to `path` (temp + rename); other ranks wait up to `timeout` for it.
fn rendezvous(path: &Path, rank: usize, timeout: Duration) -> Result<sys::ncclUniqueId> {
    if rank == 0 {
        let id = result::get_uniqueid().map_err(|e| nccl_err("get unique id", format!("{e:?}")))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, encode_id(&id.internal))
            .map_err(|e| nccl_err("rendezvous", format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(|e| nccl_err("rendezvous", format!("{}: {e}", path.display())))?;
        return Ok(id);
    }
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(sys::ncclUniqueId { internal: decode_id(&text)? });
        }
        if start.elapsed() > timeout {
            return Err(nccl_err("rendezvous", format!("rank 0 wrote no id to {} within {timeout:?}", path.display())));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl NcclComm {
    /// Joins the communicator of `world_size` processes as `rank`, on `device` (a CUDA device),
    /// meeting the others through `id_file`.
    pub fn init(
        device: &Device,
        rank: usize,
        world_size: usize,
        id_file: &Path,
        timeout: Duration,
    ) -> Result<NcclComm> {
        if world_size == 0 || rank >= world_size {
            return Err(nccl_err("init", format!("rank {rank} of world size {world_size}")));
        }
        let be = backend(device)?;
        if !nccl_available() {
            return Err(nccl_err(
                "init",
                "the NCCL library (libnccl.so.2) was not found: install NCCL or the nvidia-nccl-cu12 wheel",
            ));
        }
        let id = rendezvous(id_file, rank, timeout)?;
        be.bind("nccl init")?;
        let mut comm = std::mem::MaybeUninit::uninit();
        // SAFETY: `comm` is written by a successful call and only read after it.
        let comm = unsafe {
            result::comm_init_rank(comm.as_mut_ptr(), world_size as i32, id, rank as i32)
                .map_err(|e| nccl_err("init", format!("{e:?}")))?;
            comm.assume_init()
        };
        Ok(NcclComm { comm, device: device.clone(), rank, world_size })
    }

    /// From the environment: `KILN_RANK`, `KILN_WORLD_SIZE` and `KILN_NCCL_ID` (the id file;
    /// `RANK`/`WORLD_SIZE` as torchrun sets them are accepted too). `Ok(None)` when no world size
    /// above 1 is set.
    pub fn from_env(device: &Device) -> Result<Option<NcclComm>> {
        let var = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok();
        let parse = |name: &str, v: Option<String>| -> Result<usize> {
            v.map_or(Ok(0), |s| s.trim().parse().map_err(|_| nccl_err("init", format!("{name}={s:?} is not a number"))))
        };
        let world = parse("KILN_WORLD_SIZE", var("KILN_WORLD_SIZE", "WORLD_SIZE"))?;
        if world <= 1 {
            return Ok(None);
        }
        let rank = parse("KILN_RANK", var("KILN_RANK", "RANK"))?;
        let file = std::env::var("KILN_NCCL_ID")
            .map_err(|_| nccl_err("init", "KILN_NCCL_ID (the rendezvous file) is not set"))?;
        NcclComm::init(device, rank, world, Path::new(&file), Duration::from_secs(300)).map(Some)
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Replaces every tensor (contiguous, f32/f16/bf16, on this communicator's device) by its
    /// mean over all ranks, in place.
    pub fn all_reduce_mean_(&self, tensors: &[Tensor]) -> Result<()> {
        let be = backend(&self.device)?;
        be.bind("all_reduce")?;
        for t in tensors {
            let ty = match t.dtype() {
                DType::F32 => sys::ncclDataType_t::ncclFloat32,
                DType::F16 => sys::ncclDataType_t::ncclFloat16,
                DType::BF16 => sys::ncclDataType_t::ncclBfloat16,
                d => {
                    return Err(Error::UnsupportedDType {
                        op: "all_reduce",
                        dtype: d,
                        msg: "NCCL averages f32, f16 or bf16",
                    })
                }
            };
            if !t.layout().is_contiguous() {
                return Err(Error::Invalid { op: "all_reduce", msg: "tensors must be contiguous".into() });
            }
            let storage = t.storage();
            let s = cu("all_reduce", &**storage)?;
            let p = be.ptr(s, t.layout().offset()) as *mut std::ffi::c_void;
            // SAFETY: `p` addresses `t.numel()` live elements of this device, queued on the
            // backend's stream like every kernel; the in-place form reads and writes one buffer.
            unsafe {
                result::all_reduce(
                    p,
                    p,
                    t.numel(),
                    ty,
                    sys::ncclRedOp_t::ncclAvg,
                    self.comm,
                    be.stream.cu_stream() as _,
                )
                .map_err(|e| nccl_err("all_reduce", format!("{e:?}")))?;
            }
        }
        Ok(())
    }

    /// Copies every tensor of rank `root` to all other ranks, in place (initial weights).
    pub fn broadcast_(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let be = backend(&self.device)?;
        be.bind("broadcast")?;
        for t in tensors {
            if !t.layout().is_contiguous() {
                return Err(Error::Invalid { op: "broadcast", msg: "tensors must be contiguous".into() });
            }
            let bytes = t.numel() * t.dtype().size_in_bytes();
            let storage = t.storage();
            let s = cu("broadcast", &**storage)?;
            let p = be.ptr(s, t.layout().offset()) as *mut std::ffi::c_void;
            // SAFETY: as in all_reduce_mean_, over the tensor's bytes.
            unsafe {
                result::broadcast(
                    p,
                    p,
                    bytes,
                    sys::ncclDataType_t::ncclUint8,
                    root as i32,
                    self.comm,
                    be.stream.cu_stream() as _,
                )
                .map_err(|e| nccl_err("broadcast", format!("{e:?}")))?;
            }
        }
        Ok(())
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        // SAFETY: the handle came from comm_init_rank and is destroyed once. A failure here can
        // only be reported, not handled.
        if let Err(e) = unsafe { result::comm_destroy(self.comm) } {
            eprintln!("warning: ncclCommDestroy failed: {e:?}");
        }
    }
}

fn backend(device: &Device) -> Result<&CudaBackend> {
    device
        .backend()
        .as_any()
        .downcast_ref::<CudaBackend>()
        .ok_or_else(|| nccl_err("init", format!("NCCL needs a CUDA device, not {}", device.name())))
}

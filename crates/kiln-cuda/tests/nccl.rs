#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! NCCL data parallelism: the rendezvous id encoding and its errors (no GPU needed), a clear
//! error for a CPU device, and the all-reduce/broadcast path at world size 1 on a GPU (skips,
//! saying so, without a GPU or libnccl).

use kiln_core::{DType, Tensor};
use kiln_cuda::nccl::{decode_id, encode_id, nccl_available};
use kiln_cuda::NcclComm;
use std::time::Duration;

#[test]
fn id_file_round_trips_and_rejects_garbage() {
    let mut id = [0 as std::ffi::c_char; 128];
    for (i, c) in id.iter_mut().enumerate() {
        *c = (i * 37 % 256) as u8 as std::ffi::c_char;
    }
    let text = encode_id(&id);
    assert_eq!(text.len(), 256);
    assert_eq!(decode_id(&format!("{text}\n")).unwrap(), id);
    for bad in ["", "abc", &text[..254], &format!("{}zz", &text[..254])] {
        let e = decode_id(bad).unwrap_err().to_string();
        assert!(e.contains("256 hex digits"), "{bad:?}: {e}");
    }
}

#[test]
fn a_cpu_device_is_refused_by_name() {
    let dir = std::env::temp_dir().join("kiln-nccl-cpu-test.id");
    let e = NcclComm::init(&kiln_cpu::cpu(), 0, 1, &dir, Duration::from_secs(1)).unwrap_err().to_string();
    assert!(e.contains("needs a CUDA device"), "{e}");
    let e = NcclComm::init(&kiln_cpu::cpu(), 2, 2, &dir, Duration::from_secs(1)).unwrap_err().to_string();
    assert!(e.contains("rank 2 of world size 2"), "{e}");
}

#[test]
fn all_reduce_at_world_size_one() {
    if !kiln_cuda::is_available() || !nccl_available() {
        println!("SKIP all_reduce_at_world_size_one: needs a GPU and libnccl");
        return;
    }
    let dev = kiln_cuda::cuda(0).unwrap();
    let dir = tempfile_path();
    let comm = NcclComm::init(&dev, 0, 1, &dir, Duration::from_secs(10)).unwrap();
    let a = Tensor::randn(&[1000], 0.0, 1.0, DType::F32, 3, &dev).unwrap();
    let b = Tensor::randn(&[7, 9], 0.0, 1.0, DType::BF16, 4, &dev).unwrap();
    let (va, vb) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    comm.all_reduce_mean_(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(a.to_vec_f64().unwrap(), va, "the mean over one rank is the tensor itself");
    assert_eq!(b.to_vec_f64().unwrap(), vb);
    comm.broadcast_(std::slice::from_ref(&a), 0).unwrap();
    assert_eq!(a.to_vec_f64().unwrap(), va);
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kiln-nccl-{}.id", std::process::id()))
}

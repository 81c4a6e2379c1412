//! safetensors round trips, metadata, atomic replacement and corrupt files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::{safetensors, DType, Tensor};
use std::collections::HashMap;

#[test]
fn round_trip_every_dtype_with_metadata() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    let base = Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 7.0, -1.0], &[2, 3], &dev).unwrap();
    let mut tensors = vec![];
    for d in DType::ALL {
        tensors.push((format!("t.{d}"), base.to_dtype(d).unwrap()));
    }
    // A strided view is written as its logical (row-major) contents.
    tensors.push(("view".to_string(), base.t().unwrap()));
    let meta = HashMap::from([("format".to_string(), "kiln".to_string())]);
    safetensors::save(&p, &tensors, Some(meta.clone())).unwrap();
    let (back, m) = safetensors::load(&p, &dev).unwrap();
    assert_eq!(m, meta);
    assert_eq!(back.len(), tensors.len());
    for (name, t) in &tensors {
        let (_, b) = back.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(b.dims(), t.dims(), "{name}");
        assert_eq!(b.dtype(), t.dtype(), "{name}");
        assert_eq!(b.to_host().unwrap(), t.to_host().unwrap(), "{name}");
    }
    // No temp files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn corrupt_files_are_errors_not_panics() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.safetensors");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ").unwrap();
    let e = safetensors::load(&p, &dev).unwrap_err();
    assert!(e.to_string().contains("bad.safetensors"), "{e}");
    let t = Tensor::zeros(&[1000], DType::F32, &dev).unwrap();
    safetensors::save(&p, &[("w".into(), t)], None).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    assert!(safetensors::load(&p, &dev).is_err());
    assert!(safetensors::load(&dir.path().join("missing.safetensors"), &dev).is_err());
}

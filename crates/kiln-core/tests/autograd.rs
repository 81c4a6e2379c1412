//! Tape behaviour: accumulation, no-grad mode, graph freeing, anomaly mode, named errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::autograd::{anomaly_mode, grad_enabled};
use kiln_core::{no_grad, set_anomaly_mode, DType, Error, Tensor};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &kiln_cpu::cpu()).unwrap()
}

#[test]
fn gradients_accumulate_across_backward_calls() {
    let x = t(&[1.0, 2.0, 3.0], &[3]).requires_grad_();
    for _ in 0..2 {
        x.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    }
    // d/dx Σx² = 2x, twice.
    assert_eq!(x.grad().unwrap().to_vec::<f32>().unwrap(), vec![4.0, 8.0, 12.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn shared_subexpression_sums_both_paths() {
    let x = t(&[3.0], &[1]).requires_grad_();
    let y = x.mul(&x).unwrap(); // x²
    let z = y.add(&x).unwrap().mul(&y).unwrap(); // (x² + x)·x² = x⁴ + x³
    z.sum_all().unwrap().backward().unwrap();
    // 4x³ + 3x² at 3 = 108 + 27
    assert_eq!(x.grad().unwrap().to_vec::<f32>().unwrap(), vec![135.0]);
}

#[test]
fn no_grad_records_nothing() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_();
    let y = no_grad(|| {
        assert!(!grad_enabled());
        x.exp().unwrap()
    });
    assert!(grad_enabled());
    assert!(!y.requires_grad());
    assert!(y.is_leaf());
    assert!(matches!(y.sum_all().unwrap().backward(), Err(Error::Autograd(_))));
}

#[test]
fn graph_is_freed_after_backward() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_();
    let loss = x.exp().unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    // A second backward through the same graph finds it freed and says so.
    let err = loss.backward().unwrap_err();
    assert!(matches!(err, Error::Autograd(ref m) if m.contains("freed")), "{err}");
}

#[test]
fn detach_cuts_the_tape() {
    let x = t(&[2.0], &[1]).requires_grad_();
    let y = x.sqr().unwrap().detach().mul(&x).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f32>().unwrap(), vec![4.0]);
}

#[test]
fn backward_needs_a_scalar_or_a_seed() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_();
    let y = x.scale(3.0).unwrap();
    assert!(y.backward().is_err());
    y.backward_with(t(&[1.0, 10.0], &[2])).unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f32>().unwrap(), vec![3.0, 30.0]);
}

#[test]
fn anomaly_mode_names_the_first_bad_op() {
    let x = t(&[-1.0, 4.0], &[2]).requires_grad_();
    set_anomaly_mode(true);
    assert!(anomaly_mode());
    let r = x.exp().and_then(|e| x.log().map(|l| (e, l)));
    set_anomaly_mode(false);
    match r {
        Err(Error::NonFinite { op, what, .. }) => {
            assert_eq!(op, "log");
            assert_eq!(what, "NaN");
        }
        other => panic!("expected a NonFinite error from log, got {other:?}"),
    }
    // Off again: the same op returns NaN silently.
    assert!(x.log().unwrap().to_vec::<f32>().unwrap()[0].is_nan());
}

#[test]
fn shape_and_dtype_errors_name_the_op() {
    let a = t(&[1.0; 6], &[2, 3]);
    let b = t(&[1.0; 8], &[2, 4]);
    let e = a.add(&b).unwrap_err();
    assert!(matches!(e, Error::Broadcast { op: "add", .. }), "{e}");
    assert!(e.to_string().contains("[2, 3]") && e.to_string().contains("[2, 4]"));
    let e = a.matmul(&b).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { op: "matmul", .. }), "{e}");
    let c = a.to_dtype(DType::F64).unwrap();
    assert!(matches!(a.mul(&c).unwrap_err(), Error::DTypeMismatch { op: "mul", .. }));
    let h = a.to_dtype(DType::F16).unwrap();
    assert!(matches!(h.exp().unwrap_err(), Error::UnsupportedDType { op: "exp", .. }));
    assert_eq!(a.reshape(&[3, 2]).unwrap().dims(), &[3, 2]);
    assert!(matches!(a.reshape(&[5]).unwrap_err(), Error::BadShape { op: "reshape", .. }));
    assert!(matches!(a.transpose(0, 5).unwrap_err(), Error::DimOutOfRange { op: "transpose", .. }));
    assert!(Tensor::from_vec(vec![1.0f32; 5], &[2, 3], &kiln_cpu::cpu()).is_err());
}

#[test]
fn dtype_conversions_round_trip() {
    let v = [1.0f32, -2.5, 3.25, 65504.0, 1e-3];
    let x = t(&v, &[5]);
    for dt in [DType::F64, DType::F16, DType::BF16] {
        let back = x.to_dtype(dt).unwrap().to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
        let tol = match dt {
            DType::F64 => 0.0,
            DType::F16 => 1e-3,
            _ => 8e-3,
        };
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() <= tol * a.abs().max(1e-3), "{dt}: {a} vs {b}");
        }
    }
    let i = t(&[1.7, -2.2, 3.0], &[3]).to_dtype(DType::I64).unwrap();
    assert_eq!(i.to_vec::<i64>().unwrap(), vec![1, -2, 3]);
    assert_eq!(i.to_dtype(DType::U8).unwrap().dtype(), DType::U8);
    assert!(matches!(x.to_vec::<f64>().unwrap_err(), Error::DTypeMismatch { op: "to_vec", .. }));
}

#[test]
fn views_share_storage_and_copy_when_needed() {
    let x = t(&(0..6).map(|i| i as f32).collect::<Vec<_>>(), &[2, 3]);
    let tr = x.t().unwrap();
    assert!(tr.same_storage(&x));
    assert!(!tr.is_contiguous());
    assert_eq!(tr.to_vec::<f32>().unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let r = tr.reshape(&[6]).unwrap();
    assert!(!r.same_storage(&x));
    assert_eq!(r.to_vec::<f32>().unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let n = x.narrow(1, 1, 2).unwrap();
    assert_eq!(n.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 4.0, 5.0]);
    // In-place assignment through a view writes the parent.
    n.assign_(&t(&[9.0; 4], &[2, 2])).unwrap();
    assert_eq!(x.to_vec::<f32>().unwrap(), vec![0.0, 9.0, 9.0, 3.0, 9.0, 9.0]);
}

#[test]
fn argmax_and_compare() {
    let x = t(&[1.0, 5.0, 5.0, -1.0, 0.0, 2.0], &[2, 3]);
    assert_eq!(x.argmax(-1, false).unwrap().to_vec::<i64>().unwrap(), vec![1, 2]);
    assert_eq!(x.argmin(0, false).unwrap().to_vec::<i64>().unwrap(), vec![1, 1, 1]);
    assert_eq!(x.max(&[1], false).unwrap().to_vec::<f32>().unwrap(), vec![5.0, 2.0]);
    let m = x.cmp_scalar(1.0, kiln_core::backend::CmpOp::Gt).unwrap();
    assert_eq!(m.to_vec::<u8>().unwrap(), vec![0, 1, 1, 0, 0, 1]);
    assert_eq!(x.masked_fill(&m, -9.0).unwrap().to_vec::<f32>().unwrap(), vec![1.0, -9.0, -9.0, -1.0, 0.0, -9.0]);
    // Gradient of max splits between ties.
    let xg = x.clone().requires_grad_();
    xg.max(&[1], false).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(xg.grad().unwrap().to_vec::<f32>().unwrap(), vec![0.0, 0.5, 0.5, 0.0, 0.0, 1.0]);
}

#[test]
fn modules_report_named_parameters() {
    use kiln_core::module::{join, Module};
    struct Attn {
        qkv: Tensor,
        proj: Tensor,
    }
    impl Module for Attn {
        fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
            self.qkv.visit_params(&join(p, "qkv.weight"), f);
            self.proj.visit_params(&join(p, "proj.weight"), f);
        }
    }
    struct Block {
        attn: Attn,
        ln: Option<Tensor>,
    }
    impl Module for Block {
        fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
            self.attn.visit_params(&join(p, "attn"), f);
            self.ln.visit_params(&join(p, "ln_1.weight"), f);
        }
    }
    let z = |n: usize| Tensor::zeros(&[n], DType::F32, &kiln_cpu::cpu()).unwrap();
    let h = vec![
        Block { attn: Attn { qkv: z(6), proj: z(2) }, ln: Some(z(2)) },
        Block { attn: Attn { qkv: z(6), proj: z(2) }, ln: None },
    ];
    let names: Vec<String> = h.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec!["0.attn.qkv.weight", "0.attn.proj.weight", "0.ln_1.weight", "1.attn.qkv.weight", "1.attn.proj.weight"]
    );
    struct Model {
        h: Vec<Block>,
    }
    impl Module for Model {
        fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
            self.h.visit_params(&join(p, "h"), f);
        }
    }
    let m = Model { h };
    assert_eq!(m.named_parameters()[0].0, "h.0.attn.qkv.weight");
    assert_eq!(m.num_params(), 6 + 2 + 2 + 6 + 2);
}

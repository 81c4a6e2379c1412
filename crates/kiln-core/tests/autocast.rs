#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Autocast on the CPU: products of rounded operands with f32 accumulation and a rounded output
//! (a tensor-core GEMM's arithmetic), gradients reaching the f32 leaves through the casts, and
//! the setting scoped to its closure.

use kiln_core::{autocast, autocast_dtype, DType, Tensor};

fn round(t: &Tensor, d: DType) -> Tensor {
    t.to_dtype(d).unwrap().to_dtype(DType::F32).unwrap()
}

#[test]
fn matmul_rounds_operands_and_output_like_a_half_gemm() {
    let dev = kiln_cpu::cpu();
    let a = Tensor::randn(&[2, 7, 40], 0.0, 1.0, DType::F32, 1, &dev).unwrap();
    let b = Tensor::randn(&[40, 9], 0.0, 1.0, DType::F32, 2, &dev).unwrap();
    let exact = a.matmul(&b).unwrap().to_vec::<f32>().unwrap();
    for d in [DType::BF16, DType::F16] {
        let got = autocast(Some(d), || a.matmul(&b)).unwrap();
        assert_eq!(got.dtype(), DType::F32, "autocast returns f32 activations");
        let want = round(&round(&a, d).matmul(&round(&b, d)).unwrap(), d).to_vec::<f32>().unwrap();
        assert_eq!(got.to_vec::<f32>().unwrap(), want, "{d}: bit-identical to the explicit rounding");
        let err = got.to_vec::<f32>().unwrap().iter().zip(&exact).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let tol = if d == DType::BF16 { 0.2 } else { 0.02 };
        assert!(err > 0.0 && err < tol, "{d}: differs from f32 by half-precision rounding only ({err})");
    }
    assert_eq!(autocast_dtype(), None, "the setting ends with its closure");
}

#[test]
fn gradients_reach_f32_masters_through_the_casts() {
    let dev = kiln_cpu::cpu();
    let x = Tensor::randn(&[5, 16], 0.0, 1.0, DType::F32, 3, &dev).unwrap().requires_grad_();
    let w = Tensor::randn(&[8, 16], 0.0, 0.3, DType::F32, 4, &dev).unwrap().requires_grad_();
    let b = Tensor::randn(&[8], 0.0, 0.1, DType::F32, 5, &dev).unwrap().requires_grad_();
    let y = autocast(Some(DType::BF16), || x.linear(&w, Some(&b))).unwrap();
    y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let (gx, gw, gb) = (x.grad().unwrap(), w.grad().unwrap(), b.grad().unwrap());
    assert_eq!((gx.dtype(), gw.dtype(), gb.dtype()), (DType::F32, DType::F32, DType::F32));
    // the same graph without autocast, for scale
    let (x2, w2, b2) = (x.detach().requires_grad_(), w.detach().requires_grad_(), b.detach().requires_grad_());
    x2.linear(&w2, Some(&b2)).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for (g, r, name) in [(gx, x2.grad().unwrap(), "x"), (gw, w2.grad().unwrap(), "w"), (gb, b2.grad().unwrap(), "b")] {
        let (g, r) = (g.to_vec::<f32>().unwrap(), r.to_vec::<f32>().unwrap());
        let scale = r.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = g.iter().zip(&r).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 3e-2, "grad {name}: within bf16 rounding of the f32 gradient ({err:.2e})");
    }
}

#[test]
fn only_half_types_are_accepted() {
    let e = autocast(Some(DType::F32), || Ok(())).unwrap_err().to_string();
    assert!(e.contains("bf16 or f16"), "{e}");
    let r: kiln_core::Result<()> = autocast(Some(DType::BF16), || Err(kiln_core::Error::Autograd("boom".into())));
    assert!(r.is_err());
    assert_eq!(autocast_dtype(), None, "restored after an error too");
}

//! Training time (seed 004's LLaMA-65B example) and MFU/HFU.

use kiln_analysis::flops::{six_n_d, training_flops, Recompute};
use kiln_analysis::train_time::{training_time, training_time_6nd, training_utilisation, utilisation};
use kiln_analysis::{num_params, Arch};

#[test]
fn llama_65b_takes_22_days() {
    // seed 004: 6·N·D with N = 65e9, D = 1.4e12 = 5.46e23 FLOPs
    let flops = six_n_d(65e9, 1.4e12);
    assert!((flops / 5.46e23 - 1.0).abs() < 1e-12, "{flops}");
    // 2048 A100 at 312 TFLOP/s (bf16), 45 % MFU: ≈ 22 days
    let t = training_time(flops, 2048, 312e12, 0.45).unwrap();
    assert!((t.sustained_flops - 2.875392e17).abs() < 1e3);
    assert_eq!(format!("{:.0}", t.days), "22");
    assert!((t.days - 21.98).abs() < 0.01, "{}", t.days);
    assert!((t.device_hours - 2048.0 * t.seconds / 3600.0).abs() < 1e-6);
    // with the exact parameter count of the LLaMA-65B shape (65.29e9): 5.48e23, still ≈ 22 days
    let n = num_params(&Arch::preset("llama-65b").unwrap()).unwrap() as f64;
    let exact = training_time_6nd(n, 1.4e12, 2048, 312e12, 0.45).unwrap();
    assert_eq!(format!("{:.2e}", exact.flops), "5.48e23");
    assert_eq!(format!("{:.0}", exact.days), "22");
}

#[test]
fn mfu_and_hfu() {
    assert!((utilisation(1000.0, 6e9, 1e13).unwrap() - 0.6).abs() < 1e-12);
    let a = Arch::preset("gpt2-small").unwrap();
    let u = training_utilisation(&a, 8, 1024, Recompute::Full, 20_000.0, 312e12).unwrap();
    let f = training_flops(&a, 8, 1024, Recompute::Full).unwrap();
    assert!((u.model_flops_per_token - f.model as f64 / 8192.0).abs() < 1e-3);
    assert!((u.mfu - 20_000.0 * u.model_flops_per_token / 312e12).abs() < 1e-15);
    assert!((u.hfu / u.mfu - f.hardware as f64 / f.model as f64).abs() < 1e-12);
    assert!(u.hfu > u.mfu);
}

#[test]
fn errors() {
    assert!(training_time(1e20, 8, 312e12, 0.0).is_err());
    assert!(training_time(1e20, 8, -1.0, 0.5).is_err());
    assert!(training_time(f64::NAN, 8, 312e12, 0.5).is_err());
    assert!(utilisation(0.0, 1.0, 1.0).is_err());
}

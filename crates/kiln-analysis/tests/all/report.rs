//! Reports: the text tables carry the key numbers; the JSON carries every field.

use kiln_analysis::memory::{Precision, TrainingSetup};
use kiln_analysis::report::{self, Report};
use kiln_analysis::{Arch, Dtype, Recompute};

fn json(r: &impl Report) -> serde_json::Value {
    serde_json::from_str(&r.json().unwrap()).unwrap()
}

#[test]
fn params_report() {
    let r = report::params(&Arch::preset("gpt2-small").unwrap()).unwrap();
    let t = r.text();
    assert!(t.contains("124,439,808") && t.contains("attention q") && t.contains("head (tied"), "{t}");
    assert_eq!(json(&r)["params"]["total"], 124_439_808u64);
    let b = report::params(&Arch::preset("bert-base").unwrap()).unwrap().text();
    assert!(b.contains("109,482,240") && b.contains("pooler") && b.contains("token-type"), "{b}");
}

#[test]
fn flops_report() {
    let r = report::flops(&Arch::preset("bert-base").unwrap(), 1, 512, Recompute::None, None).unwrap();
    let t = r.text();
    assert!(t.contains("96,636,764,160") && t.contains("QKᵀ (S² term)") && t.contains("8,053,063,680"), "{t}");
    assert_eq!(r.closed_form_layer, Some(8_053_063_680));
    assert!(r.decode_per_token.is_none());
    let v = json(&r);
    assert_eq!(v["training"]["forward"]["layers"].as_u64(), Some(96_636_764_160));
    let g = report::flops(&Arch::preset("gpt2-small").unwrap(), 4, 1024, Recompute::Full, Some((2e4, 312e12))).unwrap();
    let t = g.text();
    assert!(t.contains("MFU") && t.contains("HFU") && t.contains("decode one token"), "{t}");
    assert!(g.closed_form_layer.is_some());
    let l = report::flops(&Arch::preset("llama-7b").unwrap(), 1, 2048, Recompute::None, None).unwrap();
    assert!(l.closed_form_layer.is_none());
}

#[test]
fn memory_report() {
    let setup = TrainingSetup::new(Precision::Mixed);
    let r = report::memory(&Arch::preset("gpt2-small").unwrap(), 8, 1024, &setup, Some(24 << 30)).unwrap();
    let t = r.text();
    assert!(t.contains("attention core (S² term)") && t.contains("optimizer + master (12 B/param)"), "{t}");
    assert!(t.contains("largest batch") && r.max_batch.is_some() && r.max_seq == Some(1024), "{t}");
    let v = json(&r);
    assert_eq!(v["memory"]["states"]["total"].as_u64(), Some(16 * 124_439_808));
    assert_eq!(v["setup"]["precision"], "mixed");
}

#[test]
fn kv_cache_report() {
    let r = report::kv_cache(
        &Arch::preset("gpt3-175b").unwrap(),
        2048,
        1,
        Dtype::F16,
        Some(16),
        Dtype::F16,
        Some(80 << 30),
    )
    .unwrap();
    let t = r.text();
    assert!(t.contains("9,663,676,416") && t.contains("paged (16 tokens/block)"), "{t}");
    // 350 GB of fp16 weights do not fit in 80 GiB
    assert_eq!(r.max_batch, None);
    assert_eq!(json(&r)["cache"]["total"].as_u64(), Some(9_663_676_416));
    let s =
        report::kv_cache(&Arch::preset("smollm2-135m").unwrap(), 8192, 4, Dtype::F16, None, Dtype::Q4_1, Some(1 << 30))
            .unwrap();
    assert!(s.max_batch.unwrap() >= 4 && s.text().contains("same with MHA"));
}

#[test]
fn train_time_report() {
    let a = Arch::preset("llama-65b").unwrap();
    let r = report::train_time(&a, 1.4e12, 2048, 312e12, 0.45, Some(65e9), Some(2048)).unwrap();
    let t = r.text();
    assert!(t.contains("5.460e23") && t.contains("21.98"), "{t}");
    let v = json(&r);
    assert!((v["six_nd"]["days"].as_f64().unwrap() - 21.98).abs() < 0.01);
    assert!(r.exact.is_some());
}

#[test]
fn scaling_report() {
    let r = report::scaling(None, Some(5.76e23)).unwrap();
    let t = r.text();
    assert!(t.contains("Chinchilla") && t.contains("C^0.452") && t.contains("C^0.548"), "{t}");
    let a = Arch::preset("llama-7b").unwrap();
    let r = report::scaling(Some(&a), None).unwrap();
    // with no budget the model is the Chinchilla-optimal size for the budget
    let n = r.params.unwrap().0 as f64;
    assert!((r.chinchilla.params / n - 1.0).abs() < 1e-9);
    assert!(r.text().contains("this model"));
    assert!(report::scaling(None, None).is_err());
    assert!(json(&r)["chinchilla"]["tokens"].as_f64().unwrap() > 0.0);
}

#[test]
fn errors_reach_the_reports() {
    let a = Arch::preset("bert-base").unwrap();
    let e = report::kv_cache(&a, 10, 1, Dtype::F16, None, Dtype::F16, None).unwrap_err().to_string();
    assert!(e.contains("encoder"), "{e}");
    assert!(report::flops(&a, 1, 513, Recompute::None, None).is_err());
}

//! The memory formula against the engine: the measured peak memory of a real fp32 training step
//! (forward, cross-entropy, backward, AdamW) is within 10 % of `training_memory`'s prediction.
//!
//! Measured as the process's peak resident set (Linux `VmHWM`, reset through
//! `/proc/self/clear_refs`) with kiln's buffer pool off (`KILN_POOL_MAX_BYTES=0`, set before the
//! first tensor exists), so freed buffers go back to the OS and the peak is the live peak.
//! Its own test binary: the pool setting is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_analysis::{training_memory, Arch, Precision, Recompute, TrainingSetup};
use kiln_core::ops::CrossEntropyOpts;
use kiln_core::{Module, Tensor};
use kiln_models::gpt::{Gpt, GptConfig};

extern "C" {
    /// glibc's `mallopt`.
    fn mallopt(param: i32, value: i32) -> i32;
}

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn measured_peak_of_a_training_step_is_within_10_percent_of_the_formula() {
    std::env::set_var("KILN_POOL_MAX_BYTES", "0");
    // Every buffer of 64 KiB or more gets its own mapping and is unmapped when freed (a fixed
    // M_MMAP_THRESHOLD also stops glibc raising it after the first large free): resident
    // memory then follows live memory instead of the heap's high-water mark.
    // SAFETY: mallopt only changes the allocator's policy for later allocations.
    unsafe {
        mallopt(-3, 64 * 1024); // M_MMAP_THRESHOLD
    }
    if status_kib("VmHWM:").is_none() || std::fs::write("/proc/self/clear_refs", "5").is_err() {
        eprintln!("SKIP: needs Linux /proc/self/status and clear_refs to measure peak memory");
        return;
    }
    let dev = kiln_cpu::cpu();
    for cfg in [GptConfig::gpt2(256, 256, 256, 4, 4), GptConfig::llama(256, 256, 256, 4, 4, 2, 704)] {
        let (b, t) = (8usize, 256usize);
        let model = Gpt::new(cfg.clone(), 1, &dev).unwrap();
        let mut opt = kiln_train::AdamW::new(model.named_parameters(), Default::default()).unwrap();
        let ids: Vec<i64> = (0..b * t).map(|i| (i * 13 % 256) as i64).collect();
        let x = Tensor::from_vec(ids.clone(), &[b, t], &dev).unwrap();
        let y = Tensor::from_vec(ids.iter().map(|&i| (i + 1) % 256).collect(), &[b * t], &dev).unwrap();
        let mut step = || {
            let logits = model.forward(&x, None, true, 0).unwrap().reshape(&[b * t, 256]).unwrap();
            logits.cross_entropy(&y, CrossEntropyOpts::default()).unwrap().backward().unwrap();
            opt.step(1e-3).unwrap();
            opt.zero_grad();
        };
        step(); // Adam's moments exist from the first step on
        let base = status_kib("VmRSS:").unwrap() * 1024;
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        step();
        let peak = status_kib("VmHWM:").unwrap() * 1024;
        let arch = Arch::from(&cfg);
        let mut setup = TrainingSetup::new(Precision::Fp32);
        setup.activations.dropout = false;
        setup.activations.recompute = Recompute::Selective; // fused attention keeps no S×S matrix
        let want = training_memory(&arch, b as u64, t as u64, &setup).unwrap();
        let states = want.states.total;
        // The process held weights and optimizer state before the step; the step adds its
        // activations and gradients (the model states' gradient share is inside `states`).
        let measured = peak - base + (states - want.states.grads);
        eprintln!(
            "{:?}: measured {:.1} MB (peak {:.1} MB − before {:.1} MB + weights and Adam {:.1} MB), predicted {:.1} MB (states {:.1}, activations {:.1})",
            cfg.mlp,
            measured as f64 / 1e6,
            peak as f64 / 1e6,
            base as f64 / 1e6,
            (states - want.states.grads) as f64 / 1e6,
            want.total as f64 / 1e6,
            states as f64 / 1e6,
            want.activations.total as f64 / 1e6
        );
        let ratio = measured as f64 / want.total as f64;
        assert!((0.9..=1.1).contains(&ratio), "{:?}: measured / predicted = {ratio:.3}", cfg.mlp);
    }
}

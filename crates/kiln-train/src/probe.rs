//! [`fit_linear_probe`]: a linear classifier trained on frozen hidden states (Alain & Bengio
//! 2016, "linear classifier probes"; book ch. 16): if a linear map of layer ℓ's residual stream
//! predicts a property well above the majority-class rate, the layer encodes it linearly.
//!
//! `logits = h·Wᵀ + b` on standardised features, softmax cross-entropy, full-batch AdamW on the
//! first 80 % of the examples (in order: neighbouring positions of a text are alike, so a random
//! split would leak), accuracy on the last 20 %. Hidden states are wide (hundreds of channels)
//! and examples few, so the probe overfits if trained to convergence: the last quarter of the
//! training part is held out for early stopping, and the probe keeps the weights of its best
//! held-out loss (checked every 5 steps); an L2 penalty (λ = 0.01) keeps the weights small.

use crate::{AdamW, AdamWConfig};
use kiln_core::ops::CrossEntropyOpts;
use kiln_core::{Error, Module, Result, Tensor};
use kiln_nn::Linear;

/// Strength λ of the probe's L2 penalty on its weights (features are standardised).
const L2: f64 = 1e-2;

/// Accuracy of a fitted probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeResult {
    /// On the examples it was fitted to (the first 60 %).
    pub train_accuracy: f64,
    /// On the held-out last 20 %.
    pub test_accuracy: f64,
    /// Predicting the training set's most common label on the held-out examples.
    pub majority_baseline: f64,
}

/// A copy of the probe's current weights (a clone would share them and follow later steps).
fn snapshot(p: &Linear) -> Result<Linear> {
    Ok(Linear {
        weight: p.weight.copy()?,
        bias: p.bias.as_ref().map(Tensor::copy).transpose()?,
        quant: None,
        calibration: None,
    })
}

/// Row-wise argmax of `logits` (N, K).
fn argmax_rows(logits: &Tensor) -> Result<Vec<usize>> {
    let k = logits.dims()[1];
    Ok(logits
        .to_vec::<f32>()?
        .chunks(k)
        .map(|r| r.iter().enumerate().fold(0, |b, (i, &v)| if v > r[b] { i } else { b }))
        .collect())
}

fn accuracy(pred: &[usize], labels: &[usize]) -> f64 {
    pred.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len().max(1) as f64
}

/// Fits a linear probe from `features` (N, C) f32 to `labels` (N, each below `classes`) with
/// `steps` full-batch AdamW steps at learning rate `lr` (deterministic: the probe starts at the
/// class prior, with zero weights); see the module docs.
pub fn fit_linear_probe(
    features: &Tensor,
    labels: &[usize],
    classes: usize,
    steps: usize,
    lr: f64,
) -> Result<ProbeResult> {
    let bad = |msg: String| Error::Invalid { op: "fit_linear_probe", msg };
    if features.rank() != 2 || features.dims()[0] != labels.len() {
        return Err(bad(format!("features {:?} for {} labels", features.dims(), labels.len())));
    }
    if classes < 2 || labels.iter().any(|&l| l >= classes) {
        return Err(bad(format!("labels must lie in 0..{classes} (at least two classes)")));
    }
    let (n, c) = (labels.len(), features.dims()[1]);
    let n_train = n * 4 / 5;
    if n_train < 2 || n - n_train < 1 {
        return Err(bad(format!("{n} examples are too few to split 80/20")));
    }
    let dev = features.device();
    // Standardised features: residual streams grow with depth, one learning rate fits all layers.
    let x = features.detach();
    let mean = x.mean(&[0], true)?;
    let centered = x.sub(&mean)?;
    let std = centered.sqr()?.mean(&[0], true)?.affine(1.0, 1e-6)?.sqrt()?;
    let x = centered.div(&std)?;
    let (x_train, x_test) = (x.narrow(0, 0, n_train)?, x.narrow(0, n_train, n - n_train)?);
    let n_fit = (n_train * 3 / 4).max(1);
    let ids = |r: std::ops::Range<usize>| {
        Tensor::from_vec(labels[r.clone()].iter().map(|&l| l as i64).collect(), &[r.len()], dev)
    };
    let (x_fit, y_fit) = (x_train.narrow(0, 0, n_fit)?, ids(0..n_fit)?);
    let (x_stop, y_stop) = (x_train.narrow(0, n_fit, n_train - n_fit)?, ids(n_fit..n_train)?);
    // Start at the prior: zero weights, biases the log class frequencies of the fitted part —
    // the majority-class predictor, which early stopping can only improve on.
    let mut counts = vec![1.0f64; classes]; // add-one smoothing
    labels[..n_fit].iter().for_each(|&l| counts[l] += 1.0);
    let total: f64 = counts.iter().sum();
    let prior: Vec<f32> = counts.iter().map(|k| (k / total).ln() as f32).collect();
    let probe = Linear {
        weight: Tensor::zeros(&[classes, c], kiln_core::DType::F32, dev)?.requires_grad_(),
        bias: Some(Tensor::from_vec(prior, &[classes], dev)?.requires_grad_()),
        quant: None,
        calibration: None,
    };
    let mut opt = AdamW::new(probe.named_parameters(), AdamWConfig { weight_decay: 0.01, ..Default::default() })?;
    let held_out = |p: &Linear| -> Result<f64> {
        if n_train == n_fit {
            return Ok(0.0);
        }
        kiln_core::no_grad(|| p.forward(&x_stop)?.cross_entropy(&y_stop, CrossEntropyOpts::default())?.to_scalar())
    };
    let mut best = (held_out(&probe)?, snapshot(&probe)?);
    for step in 1..=steps {
        let loss = probe.forward(&x_fit)?.cross_entropy(&y_fit, CrossEntropyOpts::default())?;
        // L2 penalty (λ/2)·‖W‖²: wide features, few examples.
        let loss = loss.add(&probe.weight.sqr()?.sum_all()?.scale(L2 / 2.0)?)?;
        loss.backward()?;
        opt.step(lr)?;
        opt.zero_grad();
        if step % 5 == 0 || step == steps {
            let l = held_out(&probe)?;
            if l < best.0 {
                best = (l, snapshot(&probe)?);
            }
        }
    }
    let probe = best.1;
    let (train_pred, test_pred) = kiln_core::no_grad(|| -> Result<_> {
        Ok((argmax_rows(&probe.forward(&x_fit)?)?, argmax_rows(&probe.forward(&x_test)?)?))
    })?;
    let mut counts = vec![0usize; classes];
    labels[..n_train].iter().for_each(|&l| counts[l] += 1);
    let majority = counts.iter().enumerate().max_by_key(|(_, &k)| k).map_or(0, |(i, _)| i);
    Ok(ProbeResult {
        train_accuracy: accuracy(&train_pred, &labels[..n_fit]),
        test_accuracy: accuracy(&test_pred, &labels[n_train..]),
        majority_baseline: labels[n_train..].iter().filter(|&&l| l == majority).count() as f64 / (n - n_train) as f64,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::fit_linear_probe;
    use kiln_core::{DType, Tensor};

    #[test]
    fn a_linearly_encoded_label_is_found_and_noise_is_not() {
        let dev = kiln_cpu::cpu();
        let (n, c) = (1500, 16);
        let x = Tensor::randn(&[n, c], 0.0, 1.0, DType::F32, 3, &dev).unwrap();
        let xs = x.to_vec::<f32>().unwrap();
        // Label: the sign of a fixed direction (channels 2 − 5): linearly decodable.
        let linear: Vec<usize> = xs.chunks(c).map(|r| usize::from(r[2] - r[5] > 0.0)).collect();
        let r = fit_linear_probe(&x, &linear, 2, 200, 0.05).unwrap();
        assert!(r.test_accuracy > 0.9 && r.majority_baseline < 0.6, "{r:?}");
        // Label: an independent coin flip: nothing beyond the baseline (allowing for chance).
        let noise: Vec<usize> = (0..n).map(|i| (i * 7919 % 13) % 2).collect();
        let r = fit_linear_probe(&x, &noise, 2, 200, 0.05).unwrap();
        assert!(r.test_accuracy < r.majority_baseline + 0.12, "{r:?}");
        assert!(fit_linear_probe(&x, &linear[..10], 2, 1, 0.1).is_err());
        assert!(fit_linear_probe(&x, &vec![3; n], 2, 1, 0.1).is_err());
    }
}

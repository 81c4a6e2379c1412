//! `loss.png`: training and validation loss against step, drawn from a run's `metrics.jsonl`
//! with plotters (text in DejaVu Sans, embedded, so no system fonts are needed).

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

/// A curve: `(step, loss)` points.
pub type Curve = Vec<(f64, f64)>;

/// The training and validation curves of `metrics.jsonl` (lines that fail to parse, such as a
/// line cut short by a crash, are skipped).
pub fn read_metrics(path: &Path) -> Result<(Curve, Curve)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for v in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        let Some(step) = v["step"].as_f64() else { continue };
        if let Some(l) = v["loss"].as_f64().filter(|l| l.is_finite()) {
            train.push((step, l));
        }
        if let Some(l) = v["val_loss"].as_f64().filter(|l| l.is_finite()) {
            val.push((step, l));
        }
    }
    Ok((train, val))
}

/// Draws `out` (PNG, 900×540) from `metrics.jsonl`; written to a temporary file and renamed.
pub fn loss_png(metrics: &Path, out: &Path) -> Result<()> {
    let (train, val) = read_metrics(metrics)?;
    if train.is_empty() {
        return Ok(());
    }
    register_font();
    let tmp = out.with_extension("tmp.png");
    draw(&tmp, &train, &val).map_err(|e| anyhow::anyhow!("drawing {}: {e}", out.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))
}

/// Registers the embedded DejaVu Sans as plotters' "sans-serif" (once per process): the
/// bitmap backend has no system fonts.
pub fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Smooths the per-step training loss with a trailing mean over `w` steps.
fn smooth(xs: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    let mut acc = 0.0;
    xs.iter()
        .enumerate()
        .map(|(i, &(s, l))| {
            acc += l;
            if i >= w {
                acc -= xs[i - w].1;
            }
            (s, acc / (i + 1).min(w) as f64)
        })
        .collect()
}

fn draw(path: &Path, train: &[(f64, f64)], val: &[(f64, f64)]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = train.last().map_or(1.0, |p| p.0).max(1.0);
    let smoothed = smooth(train, (train.len() / 50).max(1));
    let all = train.iter().chain(val);
    let lo = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    // Cap the y range at the smoothed curve's start so the first steps' spike does not flatten it.
    let hi = smoothed.iter().chain(val).map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let pad = 0.05 * (hi - lo).max(1e-3);
    let mut chart = ChartBuilder::on(&root)
        .caption("kiln train — loss (nats/token)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..last, (lo - pad)..(hi + pad))?;
    chart.configure_mesh().x_desc("step").y_desc("loss").label_style(("sans-serif", 14)).draw()?;
    let light = RGBColor(150, 180, 230);
    chart.draw_series(LineSeries::new(train.iter().copied(), light.stroke_width(1)))?;
    chart
        .draw_series(LineSeries::new(smoothed, BLUE.stroke_width(2)))?
        .label("train (smoothed)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart.draw_series(val.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

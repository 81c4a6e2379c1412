//! GGUF metadata: the typed key/value pairs after the header (`general.architecture`,
//! `llama.context_length`, `tokenizer.ggml.tokens`, …), their parsing, and the typed getters of
//! [`GgufFile`].
//!
//! On disk each pair is
//! ```text
//!   key     u64 length + UTF-8 bytes
//!   type    u32 value type id (ValueType)
//!   value   scalar: its little-endian bytes (bool: one byte, 0 or 1)
//!           string: u64 length + UTF-8 bytes
//!           array:  u32 element type id, u64 count, then the elements (arrays may nest)
//! ```
//! Arrays are kept typed ([`Array`]): a 49,152-entry `f32` score table is one `Vec<f32>`.

use super::cursor::Cursor;
use super::GgufFile;
use crate::error::{FormatError, Result};
use std::collections::HashSet;

/// Arrays nested deeper than this are rejected (a hostile file could otherwise recurse the parser
/// off its stack). Real files use depth 1 (arrays of scalars or strings).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// The type of a metadata value, with its GGUF id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// u8.
    U8 = 0,
    /// i8.
    I8 = 1,
    /// u16.
    U16 = 2,
    /// i16.
    I16 = 3,
    /// u32.
    U32 = 4,
    /// i32.
    I32 = 5,
    /// f32.
    F32 = 6,
    /// bool (one byte, 0 or 1).
    Bool = 7,
    /// UTF-8 string.
    String = 8,
    /// array.
    Array = 9,
    /// u64.
    U64 = 10,
    /// i64.
    I64 = 11,
    /// f64.
    F64 = 12,
}

impl ValueType {
    const ALL: [ValueType; 13] = [
        ValueType::U8,
        ValueType::I8,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::Bool,
        ValueType::String,
        ValueType::Array,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ];

    /// The type with GGUF id `id` (0..=12).
    pub fn from_id(id: u32) -> Option<ValueType> {
        ValueType::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// The GGUF spec's name (`UINT8`, `STRING`, …), as gguf-py's `GGUFValueType` spells it.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "UINT8",
            ValueType::I8 => "INT8",
            ValueType::U16 => "UINT16",
            ValueType::I16 => "INT16",
            ValueType::U32 => "UINT32",
            ValueType::I32 => "INT32",
            ValueType::F32 => "FLOAT32",
            ValueType::Bool => "BOOL",
            ValueType::String => "STRING",
            ValueType::Array => "ARRAY",
            ValueType::U64 => "UINT64",
            ValueType::I64 => "INT64",
            ValueType::F64 => "FLOAT64",
        }
    }

    /// The fewest bytes one value of this type takes on disk: its width for scalars, the u64 length
    /// for a string, the u32 type + u64 count for an array. Bounds a count before allocating for it.
    fn min_size(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
            ValueType::Array => 4 + 8,
        }
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A u8 value.
    U8(u8),
    /// A i8 value.
    I8(i8),
    /// A u16 value.
    U16(u16),
    /// A i16 value.
    I16(i16),
    /// A u32 value.
    U32(u32),
    /// A i32 value.
    I32(i32),
    /// A f32 value.
    F32(f32),
    /// A bool (one byte, 0 or 1) value.
    Bool(bool),
    /// A UTF-8 string value.
    String(String),
    /// An array (typed, possibly nested).
    Array(Array),
    /// A u64 value.
    U64(u64),
    /// A i64 value.
    I64(i64),
    /// A f64 value.
    F64(f64),
}

/// A metadata array: one `Vec` per element type; arrays of arrays nest.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    /// Elements of type u8.
    U8(Vec<u8>),
    /// Elements of type i8.
    I8(Vec<i8>),
    /// Elements of type u16.
    U16(Vec<u16>),
    /// Elements of type i16.
    I16(Vec<i16>),
    /// Elements of type u32.
    U32(Vec<u32>),
    /// Elements of type i32.
    I32(Vec<i32>),
    /// Elements of type f32.
    F32(Vec<f32>),
    /// Elements of type bool (one byte, 0 or 1).
    Bool(Vec<bool>),
    /// UTF-8 strings.
    String(Vec<String>),
    /// Nested arrays (each with its own element type).
    Array(Vec<Array>),
    /// Elements of type u64.
    U64(Vec<u64>),
    /// Elements of type i64.
    I64(Vec<i64>),
    /// Elements of type f64.
    F64(Vec<f64>),
}

impl Value {
    /// This value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value as an i128 (wide enough for every GGUF integer type); `None` otherwise.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The string, for a `String` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as text (strings as-is, numbers in Rust's shortest round-trip form, bools as
    /// `true`/`false`); `None` for arrays. Used for safetensors' string-only `__metadata__`.
    pub fn scalar_to_string(&self) -> Option<String> {
        Some(match self {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::F32(v) => v.to_string(),
            Value::F64(v) => v.to_string(),
            Value::Array(_) => return None,
            other => other.as_integer()?.to_string(),
        })
    }

    /// A short description for error messages: `UINT32 7`, `ARRAY of 3 STRING`.
    fn describe(&self) -> String {
        match self {
            Value::Array(a) => format!("ARRAY of {} {}", a.len(), a.element_type().name()),
            Value::String(s) if s.len() > 40 => format!("STRING of {} bytes", s.len()),
            other => format!("{} {}", other.value_type().name(), other.scalar_to_string().unwrap_or_default()),
        }
    }
}

impl Array {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The type of the elements.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// The elements of an integer array as i32, when every one fits.
    pub fn to_i32_vec(&self) -> Option<Vec<i32>> {
        fn conv<T: Copy>(v: &[T]) -> Option<Vec<i32>>
        where
            i32: TryFrom<T>,
        {
            v.iter().map(|&x| i32::try_from(x).ok()).collect()
        }
        match self {
            Array::U8(v) => conv(v),
            Array::I8(v) => conv(v),
            Array::U16(v) => conv(v),
            Array::I16(v) => conv(v),
            Array::U32(v) => conv(v),
            Array::I32(v) => Some(v.clone()),
            Array::U64(v) => conv(v),
            Array::I64(v) => conv(v),
            _ => None,
        }
    }

    /// The elements of a float array as f32 (`F64` elements rounded to the nearest f32).
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self {
            Array::F32(v) => Some(v.clone()),
            Array::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }

    /// The elements of a string array, borrowed.
    pub fn to_str_vec(&self) -> Option<Vec<&str>> {
        match self {
            Array::String(v) => Some(v.iter().map(String::as_str).collect()),
            _ => None,
        }
    }
}

// ------------------------------------------------------------------------------------ parsing

/// Reads `n_kv` key/value pairs, rejecting duplicate keys.
pub(crate) fn read_metadata(c: &mut Cursor, n_kv: u64) -> Result<Vec<(String, Value)>> {
    // Each pair takes at least 8 (key length) + 4 (type) + 1 (smallest value) bytes.
    const MIN_PAIR: u64 = 8 + 4 + 1;
    c.ensure(n_kv.checked_mul(MIN_PAIR), || format!("metadata ({n_kv} key/value pairs)"))?;
    let mut out = Vec::with_capacity(usize::try_from(n_kv).unwrap_or(0));
    let mut seen = HashSet::with_capacity(out.capacity());
    for i in 0..n_kv {
        let key = c.string(|| format!("metadata pair {i}: key"))?;
        let field = || format!("metadata key `{key}`");
        let id = c.u32(|| format!("{}: value type", field()))?;
        let ty = ValueType::from_id(id).ok_or_else(|| FormatError::BadValueType { field: field(), id })?;
        let value = read_value(c, ty, 0, &field)?;
        if !seen.insert(key.clone()) {
            return Err(FormatError::DuplicateKey(key));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Reads one value of type `ty`; `depth` counts enclosing arrays.
fn read_value(c: &mut Cursor, ty: ValueType, depth: usize, field: &dyn Fn() -> String) -> Result<Value> {
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(c.array(field)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(field)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(field)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(field)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(field)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(field)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(field)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(field)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(field)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(field)?)),
        ValueType::Bool => {
            let offset = c.pos() as u64;
            Value::Bool(to_bool(c.array::<1>(field)?[0], offset, field)?)
        }
        ValueType::String => Value::String(c.string(field)?),
        ValueType::Array => Value::Array(read_array(c, depth + 1, field)?),
    })
}

fn to_bool(byte: u8, offset: u64, field: &dyn Fn() -> String) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        byte => Err(FormatError::BadBool { field: field(), offset, byte }),
    }
}

/// Reads `count` fixed-width little-endian elements in one bounds check.
fn read_fixed<T, const N: usize>(
    c: &mut Cursor,
    count: usize,
    field: &dyn Fn() -> String,
    from_le: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    let bytes = c.take((count as u64).saturating_mul(N as u64), field)?;
    let (elems, _) = bytes.as_chunks::<N>();
    Ok(elems.iter().map(|&b| from_le(b)).collect())
}

/// Reads an array body (element type, count, elements) at nesting level `depth` (1 = top level).
fn read_array(c: &mut Cursor, depth: usize, field: &dyn Fn() -> String) -> Result<Array> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(FormatError::ArrayTooDeep { field: field(), max: MAX_ARRAY_DEPTH });
    }
    let id = c.u32(|| format!("{}: array element type", field()))?;
    let ty = ValueType::from_id(id).ok_or_else(|| FormatError::BadValueType { field: field(), id })?;
    let count = c.u64(|| format!("{}: array count", field()))?;
    // The elements need at least count × min_size bytes: a count beyond the file is an error here,
    // before anything is allocated for it.
    c.ensure(count.checked_mul(ty.min_size()), || format!("{}: array of {count} {} elements", field(), ty.name()))?;
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    Ok(match ty {
        ValueType::U8 => Array::U8(read_fixed(c, n, field, u8::from_le_bytes)?),
        ValueType::I8 => Array::I8(read_fixed(c, n, field, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(read_fixed(c, n, field, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(read_fixed(c, n, field, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(read_fixed(c, n, field, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(read_fixed(c, n, field, i32::from_le_bytes)?),
        ValueType::F32 => Array::F32(read_fixed(c, n, field, f32::from_le_bytes)?),
        ValueType::U64 => Array::U64(read_fixed(c, n, field, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(read_fixed(c, n, field, i64::from_le_bytes)?),
        ValueType::F64 => Array::F64(read_fixed(c, n, field, f64::from_le_bytes)?),
        ValueType::Bool => {
            let start = c.pos() as u64;
            let bytes = c.take(count, field)?;
            let mut v = Vec::with_capacity(n);
            for (i, &b) in bytes.iter().enumerate() {
                v.push(to_bool(b, start + i as u64, field)?);
            }
            Array::Bool(v)
        }
        ValueType::String => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(c.string(|| format!("{}[{i}]", field()))?);
            }
            Array::String(v)
        }
        ValueType::Array => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(read_array(c, depth + 1, &|| format!("{}[{i}]", field()))?);
            }
            Array::Array(v)
        }
    })
}

// ------------------------------------------------------------------------------------ getters

impl GgufFile {
    /// The value of metadata key `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata().iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| FormatError::MissingKey(key.to_owned()))
    }

    fn wrong(key: &str, expected: &'static str, v: &Value) -> FormatError {
        FormatError::WrongType { key: key.to_owned(), expected, found: v.describe() }
    }

    /// A `STRING` value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "a STRING", v))
    }

    /// A `BOOL` value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(Self::wrong(key, "a BOOL", v)),
        }
    }

    /// An integer value of any GGUF integer type, when it fits a u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_integer().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| Self::wrong(key, "an integer in u32 range", v))
    }

    /// An integer value of any GGUF integer type, when it fits a u64.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_integer().and_then(|i| u64::try_from(i).ok()).ok_or_else(|| Self::wrong(key, "an integer in u64 range", v))
    }

    /// An integer value of any GGUF integer type, when it fits an i64.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        let v = self.require(key)?;
        v.as_integer().and_then(|i| i64::try_from(i).ok()).ok_or_else(|| Self::wrong(key, "an integer in i64 range", v))
    }

    /// A `FLOAT32` value (a `FLOAT64` is rounded to the nearest f32).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match self.require(key)? {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            v => Err(Self::wrong(key, "a FLOAT32 or FLOAT64", v)),
        }
    }

    /// An `ARRAY` value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(Self::wrong(key, "an ARRAY", v)),
        }
    }

    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`), borrowed.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        match v {
            Value::Array(a) => a.to_str_vec().ok_or_else(|| Self::wrong(key, "an ARRAY of STRING", v)),
            _ => Err(Self::wrong(key, "an ARRAY of STRING", v)),
        }
    }

    /// An array of integers of any type whose elements all fit an i32 (`tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        let v = self.require(key)?;
        match v {
            Value::Array(a) => a.to_i32_vec().ok_or_else(|| Self::wrong(key, "an integer ARRAY in i32 range", v)),
            _ => Err(Self::wrong(key, "an integer ARRAY in i32 range", v)),
        }
    }

    /// An array of floats (`tokenizer.ggml.scores`) as f32 (`FLOAT64` elements rounded).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let v = self.require(key)?;
        match v {
            Value::Array(a) => a.to_f32_vec().ok_or_else(|| Self::wrong(key, "an ARRAY of FLOAT32 or FLOAT64", v)),
            _ => Err(Self::wrong(key, "an ARRAY of FLOAT32 or FLOAT64", v)),
        }
    }
}

//! The buffer pool: tensor buffers are recycled instead of returned to the allocator.
//!
//! A training step allocates the same set of buffer sizes every step. When a [`crate::CpuStorage`]
//! drops, its vector goes back to a free list keyed by (dtype, length); the next kernel output of
//! that length takes it. After the first (warm-up) step a steady-state step therefore makes no
//! tensor-buffer allocations — and, more importantly on Linux, takes no page faults on fresh
//! `mmap`ed memory. The pool holds at most `KILN_POOL_MAX_BYTES` (default 4 GiB; 0 disables it);
//! beyond that, freed buffers go back to the allocator.

use half::{bf16, f16};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static MAX_BYTES: LazyLock<usize> =
    LazyLock::new(|| std::env::var("KILN_POOL_MAX_BYTES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(4 << 30));

/// Pool counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers served from the pool.
    pub hits: u64,
    /// Buffers that had to be allocated.
    pub misses: u64,
    /// Bytes currently parked in the pool.
    pub bytes_held: usize,
}

/// Current counters (process-wide).
pub fn stats() -> PoolStats {
    PoolStats {
        hits: HITS.load(Ordering::Relaxed),
        misses: MISSES.load(Ordering::Relaxed),
        bytes_held: BYTES.load(Ordering::Relaxed),
    }
}

type FreeList<T> = Mutex<HashMap<usize, Vec<Vec<T>>>>;

/// An element type with its own free list.
pub(crate) trait Poolable: Copy + Default + Send + Sync + 'static {
    fn free_list() -> &'static FreeList<Self>;
}

macro_rules! poolable {
    ($($t:ty),*) => {$(
        impl Poolable for $t {
            fn free_list() -> &'static FreeList<$t> {
                static LIST: LazyLock<FreeList<$t>> = LazyLock::new(|| Mutex::new(HashMap::new()));
                &LIST
            }
        }
    )*};
}
poolable!(f32, f64, f16, bf16, i32, i64, u8);

/// A buffer of exactly `len` elements with unspecified (stale) contents: for outputs the kernel
/// overwrites completely.
pub(crate) fn take<T: Poolable>(len: usize) -> Vec<T> {
    if len == 0 {
        return Vec::new();
    }
    let reused = T::free_list().lock().ok().and_then(|mut m| m.get_mut(&len).and_then(|v| v.pop()));
    match reused {
        Some(v) => {
            HITS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_sub(len * std::mem::size_of::<T>(), Ordering::Relaxed);
            v
        }
        None => {
            MISSES.fetch_add(1, Ordering::Relaxed);
            vec![T::default(); len]
        }
    }
}

/// A buffer of `len` copies of `value`.
pub(crate) fn filled<T: Poolable>(len: usize, value: T) -> Vec<T> {
    let mut v = take(len);
    v.fill(value);
    v
}

/// Parks a buffer for reuse (or frees it when the pool is full).
pub(crate) fn give<T: Poolable>(v: Vec<T>) {
    let bytes = v.len() * std::mem::size_of::<T>();
    if v.is_empty() || v.len() != v.capacity() || BYTES.load(Ordering::Relaxed) + bytes > *MAX_BYTES {
        return;
    }
    if let Ok(mut m) = T::free_list().lock() {
        BYTES.fetch_add(bytes, Ordering::Relaxed);
        m.entry(v.len()).or_default().push(v);
    }
}

/// Per-thread scratch: small working buffers of a parallel task (an attention tile's scores, its
/// running max and sum…) live in a cache owned by the worker thread that runs the task, not in the
/// shared pool. Which worker runs which task depends on timing, so drawing them from the shared
/// pool would make its high-water mark (and its miss count) timing-dependent. Each thread
/// allocates its scratch once, on the first task that needs that length, and keeps it; these
/// buffers are not counted in [`stats`].
pub(crate) mod scratch {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::thread::LocalKey;

    type Cache<T> = RefCell<HashMap<usize, Vec<Vec<T>>>>;

    /// An element type with a per-thread scratch cache.
    pub(crate) trait Scratch: Copy + Default + 'static {
        fn cache() -> &'static LocalKey<Cache<Self>>;
    }

    macro_rules! scratch {
        ($($t:ty),*) => {$(
            impl Scratch for $t {
                fn cache() -> &'static LocalKey<Cache<$t>> {
                    thread_local!(static CACHE: Cache<$t> = RefCell::new(HashMap::new()));
                    &CACHE
                }
            }
        )*};
    }
    scratch!(f32, f64);

    /// A scratch buffer of exactly `len` elements with stale contents.
    pub(crate) fn take<T: Scratch>(len: usize) -> Vec<T> {
        let reused = T::cache().with(|c| c.borrow_mut().get_mut(&len).and_then(|v| v.pop()));
        reused.unwrap_or_else(|| vec![T::default(); len])
    }

    /// A scratch buffer of `len` copies of `value`.
    pub(crate) fn filled<T: Scratch>(len: usize, value: T) -> Vec<T> {
        let mut v = take(len);
        v.fill(value);
        v
    }

    /// Returns a scratch buffer to this thread's cache.
    pub(crate) fn give<T: Scratch>(v: Vec<T>) {
        if v.is_empty() {
            return;
        }
        T::cache().with(|c| c.borrow_mut().entry(v.len()).or_default().push(v));
    }
}

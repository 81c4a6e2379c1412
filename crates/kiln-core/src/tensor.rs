//! [`Tensor`]: a reference-counted view (a [`Layout`]) of a backend [`Storage`], plus its place on
//! the autodiff tape. Cloning a tensor is cheap (an `Arc`); views share storage.

use crate::autograd::{self, BackwardFn, Node};
use crate::backend::{Arg, BoxStorage, Device};
use crate::{DType, Error, HostData, Layout, Result, WithDType};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

pub(crate) type SharedStorage = Arc<RwLock<BoxStorage>>;

struct Inner {
    id: usize,
    storage: SharedStorage,
    layout: Layout,
    dtype: DType,
    device: Device,
    requires_grad: bool,
    node: Option<Arc<Node>>,
    grad: Mutex<Option<Tensor>>,
}

/// An n-dimensional array on a [`Device`], optionally tracked by autodiff.
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {}{})",
            self.dims(),
            self.dtype(),
            self.device().name(),
            if self.requires_grad() { ", grad" } else { "" }
        )
    }
}

impl Tensor {
    // ---------------------------------------------------------------- construction

    /// Wraps a fresh storage as a leaf tensor with a contiguous layout of `shape`.
    pub fn from_storage(storage: BoxStorage, shape: &[usize], device: &Device) -> Result<Tensor> {
        let layout = Layout::contiguous(shape);
        if storage.len() < layout.numel() {
            return Err(Error::BadShape {
                op: "from_storage",
                shape: shape.to_vec(),
                msg: format!("storage holds only {} elements", storage.len()),
            });
        }
        let dtype = storage.dtype();
        Ok(Tensor::make(Arc::new(RwLock::new(storage)), layout, dtype, device.clone(), false, None))
    }

    fn make(
        storage: SharedStorage,
        layout: Layout,
        dtype: DType,
        device: Device,
        requires_grad: bool,
        node: Option<Arc<Node>>,
    ) -> Tensor {
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage,
            layout,
            dtype,
            device,
            requires_grad,
            node,
            grad: Mutex::new(None),
        }))
    }

    /// A tensor from host data; `data.len()` must equal the product of `shape`.
    pub fn from_host(data: HostData, shape: &[usize], device: &Device) -> Result<Tensor> {
        if data.len() != crate::shape::numel(shape) {
            return Err(Error::BadShape {
                op: "from_vec",
                shape: shape.to_vec(),
                msg: format!("{} values given for {} elements", data.len(), crate::shape::numel(shape)),
            });
        }
        let s = device.backend().from_host(data)?;
        Tensor::from_storage(s, shape, device)
    }

    /// A tensor from a `Vec` of any [`WithDType`] element type.
    pub fn from_vec<T: WithDType>(data: Vec<T>, shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_host(T::into_host(data), shape, device)
    }

    /// A tensor from `f64` values converted to `dtype`.
    pub fn from_f64(values: &[f64], shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::from_host(HostData::from_f64_slice(values, dtype), shape, device)
    }

    /// Zeros.
    pub fn zeros(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let s = device.backend().zeros(dtype, crate::shape::numel(shape))?;
        Tensor::from_storage(s, shape, device)
    }

    /// Every element `value`.
    pub fn full(shape: &[usize], value: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        let s = device.backend().full(dtype, crate::shape::numel(shape), value)?;
        Tensor::from_storage(s, shape, device)
    }

    /// Ones.
    pub fn ones(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full(shape, 1.0, dtype, device)
    }

    /// `[0, 1, …, n−1]`.
    pub fn arange(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        Tensor::from_f64(&v, &[n], dtype, device)
    }

    /// Uniform samples in `[lo, hi)` from the counter-based RNG seeded with `seed`.
    pub fn rand(shape: &[usize], lo: f64, hi: f64, dtype: DType, seed: u64, device: &Device) -> Result<Tensor> {
        let s = device.backend().rand_uniform(dtype, crate::shape::numel(shape), lo, hi, seed)?;
        Tensor::from_storage(s, shape, device)
    }

    /// Normal samples `N(mean, std²)` from the counter-based RNG seeded with `seed`.
    pub fn randn(shape: &[usize], mean: f64, std: f64, dtype: DType, seed: u64, device: &Device) -> Result<Tensor> {
        let s = device.backend().rand_normal(dtype, crate::shape::numel(shape), mean, std, seed)?;
        Tensor::from_storage(s, shape, device)
    }

    /// The same shape, dtype and device, filled with zeros.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::zeros(self.dims(), self.dtype(), self.device())
    }

    // ---------------------------------------------------------------- accessors

    /// Unique id (for the tape).
    pub fn id(&self) -> usize {
        self.0.id
    }
    /// The shape.
    pub fn dims(&self) -> &[usize] {
        self.0.layout.shape()
    }
    /// The shape (alias of [`Tensor::dims`]).
    pub fn shape(&self) -> &[usize] {
        self.dims()
    }
    /// Size of dim `d` (negative counts from the end).
    pub fn dim(&self, d: isize) -> Result<usize> {
        Ok(self.dims()[crate::shape::resolve_dim("dim", d, self.rank())?])
    }
    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    /// The device holding the storage.
    pub fn device(&self) -> &Device {
        &self.0.device
    }
    /// The view's layout.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    /// True when the layout is row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    /// True when gradients flow to (or through) this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    /// True for tensors not produced by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.0.node.is_none()
    }
    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.0.node.as_ref()
    }
    /// Name of the op that produced this tensor, if recorded.
    pub fn op_name(&self) -> Option<&'static str> {
        self.0.node.as_ref().map(|n| n.op())
    }
    /// True when both tensors view the same storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// Read access to the storage (kernels borrow it as `&dyn Storage`).
    pub fn storage(&self) -> RwLockReadGuard<'_, BoxStorage> {
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, BoxStorage> {
        self.0.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    // ---------------------------------------------------------------- host transfer

    /// All elements in row-major order.
    pub fn to_host(&self) -> Result<HostData> {
        self.device().backend().to_host(&**self.storage(), self.layout())
    }

    /// A copy on `device` (through host memory), same shape and dtype; the tensor itself when it
    /// is already there. The copy is a new leaf: gradients do not flow back across devices.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device().same(device) {
            return Ok(self.clone());
        }
        Tensor::from_host(self.to_host()?, self.dims(), device)
    }

    /// All elements as `Vec<T>`; `T` must match the dtype.
    pub fn to_vec<T: WithDType>(&self) -> Result<Vec<T>> {
        T::from_host(self.to_host()?).ok_or(Error::DTypeMismatch { op: "to_vec", lhs: self.dtype(), rhs: T::DTYPE })
    }

    /// All elements converted to `f64`.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(self.to_host()?.to_f64_vec())
    }

    /// The single element of a one-element tensor, as `f64`.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::BadShape {
                op: "to_scalar",
                shape: self.dims().to_vec(),
                msg: "expected exactly one element".into(),
            });
        }
        Ok(self.to_vec_f64()?[0])
    }

    // ---------------------------------------------------------------- autodiff

    /// A leaf that shares this storage and requires gradients (a trainable parameter).
    pub fn requires_grad_(self) -> Tensor {
        Tensor::make(self.0.storage.clone(), self.0.layout.clone(), self.0.dtype, self.0.device.clone(), true, None)
    }

    /// A leaf that shares this storage and is cut from the tape.
    pub fn detach(&self) -> Tensor {
        Tensor::make(self.0.storage.clone(), self.0.layout.clone(), self.0.dtype, self.0.device.clone(), false, None)
    }

    /// The accumulated gradient of a leaf, after [`Tensor::backward`].
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replaces the accumulated gradient (gradient clipping, loss unscaling).
    pub fn set_grad(&self, g: Option<Tensor>) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = g;
    }

    pub(crate) fn accumulate_grad(&self, g: &Tensor) -> Result<()> {
        let mut slot = self.0.grad.lock().unwrap_or_else(|e| e.into_inner());
        let g = g.detach();
        *slot = Some(match slot.take() {
            Some(prev) => prev.add(&g)?,
            None => g.contiguous()?,
        });
        Ok(())
    }

    /// Backpropagates from a scalar (one-element) tensor, seeding `dL/dL = 1`; gradients
    /// accumulate into the leaves' [`Tensor::grad`]. The graph is freed as it is walked.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a one-element tensor, got shape {:?}; use backward_with",
                self.dims()
            )));
        }
        let seed = Tensor::ones(self.dims(), self.dtype(), self.device())?;
        self.backward_with(seed)
    }

    /// Backpropagates with an explicit seed gradient of this tensor's shape.
    pub fn backward_with(&self, seed: Tensor) -> Result<()> {
        if !self.requires_grad() {
            return Err(Error::Autograd("backward() on a tensor that does not require grad".into()));
        }
        if seed.dims() != self.dims() {
            return Err(Error::ShapeMismatch { op: "backward", lhs: self.dims().to_vec(), rhs: seed.dims().to_vec() });
        }
        autograd::backward(self, seed)
    }

    /// Wraps a kernel's result as the output of op `op`, recording `backward` on the tape when
    /// grad mode is on and any input requires grad; checks for NaN/Inf in anomaly mode.
    pub fn from_op(
        storage: BoxStorage,
        shape: &[usize],
        device: &Device,
        op: &'static str,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Result<Tensor> {
        let dtype = storage.dtype();
        let t =
            Tensor::make(Arc::new(RwLock::new(storage)), Layout::contiguous(shape), dtype, device.clone(), false, None);
        t.record(op, inputs, backward)
    }

    /// Records `backward` for an already-built tensor `self` (used by views, which share storage).
    pub(crate) fn record(
        self,
        op: &'static str,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Result<Tensor> {
        if autograd::anomaly_mode() {
            autograd::check_finite(op, &self)?;
        }
        let track = autograd::grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        if !track {
            return Ok(self);
        }
        let f: BackwardFn = Box::new(backward);
        // The node keeps graph handles of its inputs, not the inputs: an intermediate tensor's
        // buffer is freed as soon as no closure saved it and no one else holds it.
        let handles = inputs.iter().map(|t| autograd::Input::of(t)).collect();
        let node = Arc::new(Node { op, state: Mutex::new(Some((handles, f))) });
        let Inner { storage, layout, dtype, device, .. } = &*self.0;
        Ok(Tensor::make(storage.clone(), layout.clone(), *dtype, device.clone(), true, Some(node)))
    }

    /// A view sharing this tensor's storage with another layout (no tape record).
    pub(crate) fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor::make(self.0.storage.clone(), layout, self.0.dtype, self.0.device.clone(), false, None)
    }

    // ---------------------------------------------------------------- in-place (no autodiff)

    /// Copies `src`'s values into this tensor's elements in place (shapes and dtypes must match).
    /// Not recorded on the tape: for optimizer updates and buffer writes.
    pub fn assign_(&self, src: &Tensor) -> Result<()> {
        if src.dims() != self.dims() {
            return Err(Error::ShapeMismatch { op: "assign_", lhs: self.dims().to_vec(), rhs: src.dims().to_vec() });
        }
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch { op: "assign_", lhs: self.dtype(), rhs: src.dtype() });
        }
        check_same_device("assign_", self, src)?;
        if self.same_storage(src) {
            let copy = src.copy()?;
            return self.assign_(&copy);
        }
        let s = src.storage();
        let mut d = self.storage_mut();
        self.device().backend().copy_into(&mut **d, self.layout(), &**s, src.layout())
    }

    /// A contiguous copy with its own storage (not recorded).
    pub fn copy(&self) -> Result<Tensor> {
        let s = self.device().backend().copy_strided(&**self.storage(), self.layout())?;
        Tensor::from_storage(s, self.dims(), self.device())
    }

    /// Runs `f` with this tensor as a kernel argument.
    pub fn with_arg<R>(&self, f: impl FnOnce(Arg) -> Result<R>) -> Result<R> {
        let g = self.storage();
        f((&**g, self.layout()))
    }
}

/// Fails unless both tensors live on the same device.
pub(crate) fn check_same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device().same(b.device()) {
        Ok(())
    } else {
        Err(Error::DeviceMismatch { op, lhs: a.device().name().into(), rhs: b.device().name().into() })
    }
}

/// Fails unless both tensors have the same dtype.
pub(crate) fn check_same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() == b.dtype() {
        Ok(())
    } else {
        Err(Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() })
    }
}

/// Fails unless the tensor has a compute dtype (`F32`/`F64`).
pub(crate) fn check_compute(op: &'static str, a: &Tensor) -> Result<()> {
    if a.dtype().is_compute() {
        Ok(())
    } else {
        Err(Error::UnsupportedDType { op, dtype: a.dtype(), msg: "compute ops take f32 or f64; convert with to_dtype" })
    }
}

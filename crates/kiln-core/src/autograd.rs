//! Reverse-mode automatic differentiation over a tape of coarse ops.
//!
//! Every op that has an input with `requires_grad` records a [`Node`]: its name, a graph handle
//! of each input ([`Input`]: id, shape, and the input's own node — not its buffer) and a
//! backward closure holding exactly the state it saved (llm.c style: the forward decides what the
//! backward needs). So an intermediate tensor lives only as long as a closure saved it: the
//! output of a bias add or a residual projection is freed during the forward pass, as in
//! PyTorch, instead of staying alive until the backward reaches it. [`crate::Tensor::backward`] walks the nodes in reverse topological order,
//! calls each closure once (it is `FnOnce`: the graph and its saved tensors are freed as it goes)
//! and accumulates gradients into leaf tensors (`Tensor::grad`). Backward closures run in no-grad
//! mode, so the backward builds no graph of its own.
//!
//! Anomaly mode ([`set_anomaly_mode`]) checks every op's output, and every gradient, for NaN/Inf
//! and fails with [`crate::Error::NonFinite`] naming the first op that produced one.

use crate::{Error, Result, Tensor};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A backward closure: given `dL/d(output)`, returns `dL/d(input_i)` for each recorded input
/// (`None` where the input needs no gradient).
pub type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// One recorded op on the tape.
pub struct Node {
    pub(crate) op: &'static str,
    pub(crate) state: Mutex<Option<(Vec<Input>, BackwardFn)>>,
}

/// What the tape keeps of an op's input: enough to route its gradient (its id, shape, whether
/// it wants one, and the node that made it), plus the tensor itself only for a leaf that
/// accumulates a gradient (a parameter).
#[derive(Clone)]
pub(crate) struct Input {
    id: usize,
    dims: Vec<usize>,
    requires_grad: bool,
    node: Option<Arc<Node>>,
    leaf: Option<Tensor>,
}

impl Input {
    pub(crate) fn of(t: &Tensor) -> Input {
        let node = t.node().cloned();
        let leaf = (t.requires_grad() && node.is_none()).then(|| t.clone());
        Input { id: t.id(), dims: t.dims().to_vec(), requires_grad: t.requires_grad(), node, leaf }
    }
}

impl Node {
    /// The op's name.
    pub fn op(&self) -> &'static str {
        self.op
    }
}

thread_local! {
    static NO_GRAD_DEPTH: Cell<usize> = const { Cell::new(0) };
}
static ANOMALY: AtomicBool = AtomicBool::new(false);

/// True when ops record the tape on this thread (no [`NoGradGuard`] alive).
pub fn grad_enabled() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() == 0)
}

/// While alive, ops on this thread record no tape (PyTorch's `torch.no_grad()`).
pub struct NoGradGuard(());

impl NoGradGuard {
    /// Disables tape recording until dropped.
    pub fn new() -> NoGradGuard {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
        NoGradGuard(())
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        NO_GRAD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs `f` with tape recording disabled.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = NoGradGuard::new();
    f()
}

/// Turns anomaly detection on or off (process-wide).
pub fn set_anomaly_mode(on: bool) {
    ANOMALY.store(on, Ordering::Relaxed);
}

/// True when anomaly detection is on.
pub fn anomaly_mode() -> bool {
    ANOMALY.load(Ordering::Relaxed)
}

/// Fails with `NonFinite` when `t` holds a NaN or Inf (called in anomaly mode only).
pub(crate) fn check_finite(op: &'static str, t: &Tensor) -> Result<()> {
    if !t.dtype().is_float() {
        return Ok(());
    }
    let v = t.to_vec_f64()?;
    let what = if v.iter().any(|x| x.is_nan()) {
        "NaN"
    } else if v.iter().any(|x| x.is_infinite()) {
        "Inf"
    } else {
        return Ok(());
    };
    Err(Error::NonFinite { op, what, shape: t.dims().to_vec() })
}

/// Reverse-mode sweep from `root` seeded with `seed` (same shape as `root`).
pub(crate) fn backward(root: &Tensor, seed: Tensor) -> Result<()> {
    // Topological order by iterative DFS over nodes (post-order).
    let mut order: Vec<Input> = Vec::new();
    let mut visited: HashMap<usize, ()> = HashMap::new();
    let mut stack: Vec<(Input, bool)> = vec![(Input::of(root), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if visited.insert(t.id, ()).is_some() {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = &t.node {
            let guard = node.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((inputs, _)) = guard.as_ref() {
                for i in inputs {
                    if i.requires_grad && !visited.contains_key(&i.id) {
                        stack.push((i.clone(), false));
                    }
                }
            }
        }
    }

    let _ng = NoGradGuard::new();
    let mut grads: HashMap<usize, Tensor> = HashMap::new();
    grads.insert(root.id(), seed);
    for t in order.iter().rev() {
        let Some(g) = grads.remove(&t.id) else {
            continue;
        };
        let Some(node) = &t.node else {
            // A leaf: accumulate into `.grad`.
            if let Some(leaf) = &t.leaf {
                leaf.accumulate_grad(&g)?;
            }
            continue;
        };
        let taken = node.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some((inputs, f)) = taken else {
            return Err(Error::Autograd(format!(
                "the graph through `{}` was already freed by an earlier backward",
                node.op
            )));
        };
        let in_grads = f(&g)?;
        if in_grads.len() != inputs.len() {
            return Err(Error::Autograd(format!(
                "backward of `{}` returned {} gradients for {} inputs",
                node.op,
                in_grads.len(),
                inputs.len()
            )));
        }
        for (inp, gi) in inputs.iter().zip(in_grads) {
            let Some(gi) = gi else { continue };
            if !inp.requires_grad {
                continue;
            }
            if gi.dims() != inp.dims.as_slice() {
                return Err(Error::Autograd(format!(
                    "backward of `{}` produced a gradient of shape {:?} for an input of shape {:?}",
                    node.op,
                    gi.dims(),
                    inp.dims
                )));
            }
            if anomaly_mode() {
                check_finite(node.op, &gi).map_err(|e| match e {
                    Error::NonFinite { what, shape, .. } => Error::NonFinite {
                        op: node.op,
                        what: if what == "NaN" { "NaN in gradient" } else { "Inf in gradient" },
                        shape,
                    },
                    e => e,
                })?;
            }
            let acc = match grads.remove(&inp.id) {
                Some(prev) => prev.add(&gi)?,
                None => gi,
            };
            grads.insert(inp.id, acc);
        }
    }
    Ok(())
}

impl Tensor {
    /// Names of the ops recorded in the graph that ends at this tensor (each name once, in
    /// first-seen order walking back from here).
    pub fn graph_ops(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        let mut seen: HashMap<usize, ()> = HashMap::new();
        let mut stack = vec![Input::of(self)];
        while let Some(t) = stack.pop() {
            if seen.insert(t.id, ()).is_some() {
                continue;
            }
            let Some(node) = &t.node else { continue };
            if !names.contains(&node.op) {
                names.push(node.op);
            }
            let guard = node.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((inputs, _)) = guard.as_ref() {
                stack.extend(inputs.iter().cloned());
            }
        }
        names
    }
}

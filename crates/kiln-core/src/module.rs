//! [`Module`]: anything with named parameters. Layers implement `visit_params`, calling the visitor
//! for each parameter with its path (`h.0.attn.qkv.weight`); nesting joins names with `.`, so
//! the names a model reports are its canonical weight names (the keys of its safetensors file).

use crate::Tensor;

/// A layer or model that owns parameters.
pub trait Module {
    /// Calls `f(name, tensor)` for every parameter, names prefixed with `prefix` (which is empty
    /// or ends without a dot; use [`join`] to extend it).
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor));

    /// All parameters with their full names, in visiting order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit_params("", &mut |n, t| out.push((n.to_string(), t.clone())));
        out
    }

    /// Total number of parameter elements.
    fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit_params("", &mut |_, t| n += t.numel());
        n
    }
}

/// `prefix.name`, or `name` when the prefix is empty.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl<M: Module> Module for Vec<M> {
    /// Children are numbered: `h.0.…`, `h.1.…`.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (i, m) in self.iter().enumerate() {
            m.visit_params(&join(prefix, &i.to_string()), f);
        }
    }
}

impl Module for Tensor {
    /// A bare tensor is one parameter named by the prefix itself.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(prefix, self)
    }
}

impl<M: Module> Module for Option<M> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if let Some(m) = self {
            m.visit_params(prefix, f)
        }
    }
}

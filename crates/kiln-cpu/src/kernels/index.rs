//! index_select (embedding lookup) and index_add (its scatter-add backward).

use crate::CpuBackend;
use kiln_core::backend::IndexOps;

impl IndexOps for CpuBackend {}

//! The graph checks and the layer order of a network, and pooling output sizes: shared by
//! plan compilation and training.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::error::{Error, Result};
use crate::network::{Layer, Network, Op};

/// An `InvalidArgument` error naming the layer and its kind.
pub(crate) fn layer_error(layer: &Layer, message: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("layer '{}' ({}): {message}", layer.name, layer.op.kind()))
}

/// Wraps an error in the layer it concerns ([`Error::Layer`], the error kept whole).
pub(crate) fn in_layer<T>(layer: &Layer, r: Result<T>) -> Result<T> {
    r.map_err(|e| Error::Layer { layer: layer.name.clone(), kind: layer.op.kind(), source: Box::new(e) })
}

/// The layers needed for the output, in a deterministic topological order.
pub(crate) fn order(net: &Network) -> Result<Vec<&Layer>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, l) in net.layers.iter().enumerate() {
        if l.name == net.input.name {
            return Err(Error::InvalidArgument(format!(
                "layer '{}' has the name of the network input",
                l.name
            )));
        }
        if index.insert(l.name.as_str(), i).is_some() {
            return Err(Error::InvalidArgument(format!("two layers are named '{}'", l.name)));
        }
    }
    for l in &net.layers {
        let arity_ok = match l.op {
            Op::Add => l.inputs.len() >= 2,
            Op::Binary(_) | Op::MatMul(_) => l.inputs.len() == 2,
            Op::Where => l.inputs.len() == 3,
            Op::Concat => !l.inputs.is_empty(),
            _ => l.inputs.len() == 1,
        };
        if !arity_ok {
            return Err(layer_error(l, format!("wrong number of inputs ({})", l.inputs.len())));
        }
        if let Some(missing) =
            l.inputs.iter().find(|i| **i != net.input.name && !index.contains_key(i.as_str()))
        {
            return Err(layer_error(
                l,
                format!("reads '{missing}', which is neither a layer nor the input '{}'", net.input.name),
            ));
        }
    }
    if net.output != net.input.name && !index.contains_key(net.output.as_str()) {
        return Err(Error::InvalidArgument(format!("the network output '{}' is not a layer", net.output)));
    }

    // Layers the output depends on.
    let mut needed = HashSet::new();
    let mut stack: Vec<&str> = vec![net.output.as_str()];
    while let Some(name) = stack.pop() {
        if let Some(&i) = index.get(name) {
            if needed.insert(i) {
                stack.extend(net.layers[i].inputs.iter().map(String::as_str));
            }
        }
    }
    // Kahn's algorithm, lowest layer index first among the ready ones.
    let mut pending: HashMap<usize, usize> = HashMap::new();
    let mut users: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &needed {
        let deps: Vec<usize> =
            net.layers[i].inputs.iter().filter_map(|n| index.get(n.as_str()).copied()).collect();
        pending.insert(i, deps.len());
        for d in deps {
            users.entry(d).or_default().push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        pending.iter().filter(|(_, &n)| n == 0).map(|(&i, _)| Reverse(i)).collect();
    let mut sorted = Vec::with_capacity(needed.len());
    while let Some(Reverse(i)) = ready.pop() {
        sorted.push(&net.layers[i]);
        for &u in users.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            let n = pending.get_mut(&u).expect("user is needed");
            *n -= 1;
            if *n == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if sorted.len() < needed.len() {
        let done: HashSet<&str> = sorted.iter().map(|l| l.name.as_str()).collect();
        let mut cycle: Vec<&str> =
            needed.iter().map(|&i| net.layers[i].name.as_str()).filter(|n| !done.contains(n)).collect();
        cycle.sort_unstable();
        return Err(Error::InvalidArgument(format!(
            "the network has a cycle through layers: {}",
            cycle.join(", ")
        )));
    }
    Ok(sorted)
}

/// Output size of pooling along one axis (PyTorch / ONNX rules for `ceil_mode`).
pub(crate) fn pool_out(
    size: usize,
    kernel: usize,
    stride: usize,
    before: usize,
    after: usize,
    ceil: bool,
) -> Option<usize> {
    let span = size.checked_add(before)?.checked_add(after)?.checked_sub(kernel)?;
    let mut out = if ceil { span.div_ceil(stride) + 1 } else { span / stride + 1 };
    // The last window must start inside the input or its leading padding.
    if ceil && (out - 1) * stride >= size + before {
        out -= 1;
    }
    Some(out)
}

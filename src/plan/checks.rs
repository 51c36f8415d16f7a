//! Checks and weight preparation of single layers during compilation: conv sizes, BN
//! folding, the stride baseline's grid, BatchNorm and LRN parameters.

use std::sync::Arc;

use super::graph::layer_error;
use crate::error::{Error, Result};
use crate::layer::ConvLayer;
use crate::network::{BatchNorm, Conv, Layer, Lrn};
use crate::strategy::MaskStrategy;

/// Checks a conv's sizes against its `channels`-channel input (sizes come from user data:
/// no product may overflow).
pub(super) fn check_conv_weights(layer: &Layer, c: &Conv, channels: usize) -> Result<()> {
    let [kh, kw] = c.kernel;
    if c.out_channels == 0 || kh == 0 || kw == 0 || c.groups == 0 {
        return Err(layer_error(layer, "out_channels, kernel and groups must be positive"));
    }
    // Sizes come from user data: no product may overflow.
    let per_filter = c.out_channels.checked_mul(kh).and_then(|v| v.checked_mul(kw)).unwrap_or(usize::MAX);
    if !c.weights.len().is_multiple_of(per_filter)
        || (c.weights.len() / per_filter).checked_mul(c.groups) != Some(channels)
    {
        return Err(layer_error(
            layer,
            format!(
                "weights hold {} values, but {} output channels over a {}-channel input in {} group(s) \
                 with a {kh}x{kw} kernel need {}",
                c.weights.len(),
                c.out_channels,
                channels,
                c.groups,
                per_filter.saturating_mul(channels) / c.groups.max(1)
            ),
        ));
    }
    Ok(())
}

/// The conv's weights and bias, with a following BatchNorm (and the layer it came from,
/// for errors) folded in: `w·a`, `b·a + β` per output channel.
pub(super) fn folded_weights(
    layer: &Layer,
    c: &Conv,
    bn: Option<(&BatchNorm, &Layer)>,
) -> Result<(Arc<[f32]>, Vec<f32>)> {
    let mut bias = c.bias.clone().unwrap_or_else(|| vec![0.0; c.out_channels]);
    if bias.len() != c.out_channels {
        return Err(layer_error(
            layer,
            format!("bias has {} values for {} channels", bias.len(), c.out_channels),
        ));
    }
    let Some((bn, bn_layer)) = bn else {
        // Shared with the network, not copied.
        return Ok((Arc::clone(&c.weights), bias));
    };
    check_bn(bn, c.out_channels).map_err(|e| layer_error(bn_layer, e))?;
    let (a, b) = bn.affine();
    let mut weights = c.weights.to_vec();
    let k = weights.len() / c.out_channels;
    for (o, w) in weights.chunks_exact_mut(k).enumerate() {
        w.iter_mut().for_each(|v| *v *= a[o]);
        bias[o] = bias[o] * a[o] + b[o];
    }
    Ok((weights.into(), bias))
}

/// The stride baseline's output map (METHOD.md): its grid mask's rows x columns, in
/// row-major order, are a dense `K_h x K_w` map; any other mask (or a compact input) is
/// refused.
pub(super) fn stride_baseline_map(
    layer: &Layer,
    c: &Conv,
    conv: &ConvLayer,
    on_compact: bool,
) -> Result<(usize, usize)> {
    // The grid's rows x columns, in row-major order, are a dense K_h x K_w map.
    let mask = conv.mask();
    let out_w = u32::try_from(conv.geometry().out_w()).unwrap_or(u32::MAX);
    let mut rows: Vec<u32> = mask.positions().iter().map(|p| p / out_w).collect();
    rows.dedup();
    let (kh, kw) = (rows.len(), mask.len() / rows.len());
    let grid =
        c.perforation.as_ref().is_some_and(|p| p.strategy == MaskStrategy::Grid || p.positions.is_some());
    let cols: Vec<u32> = mask.positions().iter().take(kw).map(|p| p % out_w).collect();
    let product = rows.iter().flat_map(|&r| cols.iter().map(move |&c| r * out_w + c));
    let rectangular = kh * kw == mask.len() && product.eq(mask.positions().iter().copied());
    if on_compact || !grid || !rectangular {
        return Err(layer_error(
            layer,
            "the stride baseline needs a grid mask (rows x columns) on a dense input",
        ));
    }
    Ok((kh, kw))
}

pub(super) fn check_bn(bn: &BatchNorm, channels: usize) -> Result<()> {
    for (what, v) in [("scale", &bn.scale), ("shift", &bn.shift), ("mean", &bn.mean), ("var", &bn.var)] {
        if v.len() != channels {
            return Err(Error::shape(format!("batch norm {what}"), channels, v.len()));
        }
    }
    if bn.var.iter().any(|&v| v + bn.epsilon <= 0.0 || v.is_nan()) {
        return Err(Error::InvalidArgument("batch norm variance + epsilon must be positive".into()));
    }
    Ok(())
}

pub(super) fn check_lrn(l: &Lrn) -> Result<()> {
    if l.size == 0 {
        return Err(Error::InvalidArgument("LRN size must be at least 1".into()));
    }
    Ok(())
}

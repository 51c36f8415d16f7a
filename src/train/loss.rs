//! Softmax cross-entropy on logits.

/// Mean softmax cross-entropy of `logits` (`[batch, classes]`) against `labels`, its
/// gradient scaled by `grad_scale` (1/batch for the mean loss), and the number of top-1
/// and top-5 hits.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    grad_scale: f32,
) -> (f64, Vec<f32>, usize, usize) {
    let mut grad = vec![0.0f32; logits.len()];
    let (mut loss, mut top1, mut top5) = (0.0f64, 0, 0);
    for ((row, g), &label) in logits.chunks_exact(classes).zip(grad.chunks_exact_mut(classes)).zip(labels) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&v| f64::from(v - m).exp()).sum();
        let l = label as usize;
        loss += sum.ln() - f64::from(row[l] - m);
        for (k, gk) in g.iter_mut().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            let p = (f64::from(row[k] - m).exp() / sum) as f32;
            *gk = grad_scale * (p - if k == l { 1.0 } else { 0.0 });
        }
        let rank = row.iter().filter(|&&v| v > row[l]).count();
        top1 += usize::from(rank == 0);
        top5 += usize::from(rank < 5);
    }
    (loss / labels.len().max(1) as f64, grad, top1, top5)
}

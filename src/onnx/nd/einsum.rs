//! Einsum of one or two activations, lowered onto free regroupings of atoms and one
//! batched product (`matmul_strided`).
//!
//! Two operands: every label is a *batch* label (in both operands and the output), a
//! *contracted* one (both operands, not the output) or a *free* one (one operand and the
//! output). The operands are permuted and reshaped to `[batch…, M, K]` and
//! `[batch…, K, N]`, multiplied, and the product is reshaped and permuted to the output.

use super::{show, NdValue};
use crate::error::Result;
use crate::onnx::import::{attr_s, bad, Importer};
use crate::onnx::proto::NodeProto;
use crate::onnx::tensor::{batch_factor, symbolic};

/// A parsed equation: one label list per operand and the output's.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Equation {
    pub inputs: Vec<Vec<char>>,
    pub output: Vec<char>,
}

/// Parses `equation` for operands of `ranks`: letters, spaces, `...` (expanded to labels
/// outside the ASCII letters), an implicit output (labels that occur once, in alphabetical
/// order after the ellipsis) when there is no `->`.
pub(super) fn parse(equation: &str, ranks: &[usize]) -> std::result::Result<Equation, String> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(format!("{} operand(s) in the equation, {} given", terms.len(), ranks.len()));
    }
    let mut ellipsis_rank = None;
    let mut inputs = Vec::with_capacity(terms.len());
    for (term, &rank) in terms.iter().zip(ranks) {
        let named = term.replace("...", "").chars().count();
        let labels = expand(term, rank.checked_sub(named), &mut ellipsis_rank)?;
        if labels.len() != rank {
            return Err(format!("term '{term}' has {} labels for an operand of rank {rank}", labels.len()));
        }
        inputs.push(labels);
    }
    let output = match rhs {
        Some(r) => {
            let labels = expand(r, ellipsis_rank, &mut ellipsis_rank)?;
            for (i, l) in labels.iter().enumerate() {
                if labels[..i].contains(l) {
                    return Err(format!("label '{l}' repeats in the output"));
                }
                if !inputs.iter().any(|t| t.contains(l)) {
                    return Err(format!("output label '{l}' is in no operand"));
                }
            }
            labels
        }
        None => {
            let all: Vec<char> = inputs.iter().flatten().copied().collect();
            let once = |c: &char| all.iter().filter(|x| *x == c).count() == 1;
            let mut ell: Vec<char> = (0..ellipsis_rank.unwrap_or(0)).map(ellipsis_label).collect();
            let mut named: Vec<char> =
                all.iter().copied().filter(|c| c.is_ascii_alphabetic() && once(c)).collect();
            named.sort_unstable();
            ell.extend(named);
            ell
        }
    };
    Ok(Equation { inputs, output })
}

/// Label for axis `i` of an ellipsis (outside the letters an equation may name).
fn ellipsis_label(i: usize) -> char {
    char::from_u32(0x100 + u32::try_from(i).unwrap_or(0)).unwrap_or('\u{100}')
}

/// The labels of one term, `...` replaced by `ellipsis` labels (a length learnt from the
/// first operand that has one).
fn expand(
    term: &str,
    ellipsis: Option<usize>,
    seen: &mut Option<usize>,
) -> std::result::Result<Vec<char>, String> {
    let mut out = Vec::new();
    let mut rest = term;
    if let Some((before, after)) = term.split_once("...") {
        if after.contains("...") {
            return Err(format!("term '{term}' has two ellipses"));
        }
        let n = ellipsis.ok_or_else(|| format!("term '{term}' has more labels than its operand has axes"))?;
        if seen.is_some_and(|s| s != n) {
            return Err("ellipses of different ranks".into());
        }
        *seen = Some(n);
        out.extend(check_letters(before)?);
        out.extend((0..n).map(ellipsis_label));
        rest = after;
    }
    out.extend(check_letters(rest)?);
    Ok(out)
}

fn check_letters(s: &str) -> std::result::Result<Vec<char>, String> {
    s.chars()
        .map(|c| if c.is_ascii_alphabetic() { Ok(c) } else { Err(format!("'{c}' is not a label")) })
        .collect()
}

impl Importer<'_> {
    /// Einsum: a permutation of one operand, or a contraction of two.
    pub(super) fn nd_einsum(&mut self, node: &NodeProto) -> Result<()> {
        let equation = attr_s(node, "equation");
        let operands = node.input.iter().filter(|n| !n.is_empty()).count();
        let values: Vec<NdValue> = (0..operands).map(|k| self.nd_of(node, k)).collect::<Result<_>>()?;
        let ranks: Vec<usize> = values.iter().map(|v| v.nd.rank()).collect();
        let eq =
            parse(&equation, &ranks).map_err(|why| bad(node, format!("equation '{equation}': {why}")))?;
        let refuse = |why: String| bad(node, format!("Einsum '{equation}': {why}"));
        for t in &eq.inputs {
            if let Some(l) = t.iter().enumerate().find(|(i, l)| t[..*i].contains(l)).map(|x| x.1) {
                return Err(refuse(format!(
                    "repeated label '{l}' in one operand (a diagonal) is not supported"
                )));
            }
        }
        let out = match &values[..] {
            [a] => {
                let perm: Vec<usize> =
                    eq.output.iter().filter_map(|l| eq.inputs[0].iter().position(|x| x == l)).collect();
                if perm.len() != ranks[0] {
                    return Err(refuse("summing an axis of a single operand is not supported".into()));
                }
                a.permuted(&perm)
            }
            [a, b] => self.einsum_pair(node, &eq, a, b)?,
            _ => return Err(refuse(format!("{operands} operands (one or two are supported)"))),
        };
        self.nd_set(node, 0, out);
        Ok(())
    }

    fn einsum_pair(&mut self, node: &NodeProto, eq: &Equation, a: &NdValue, b: &NdValue) -> Result<NdValue> {
        let (ta, tb, to) = (&eq.inputs[0], &eq.inputs[1], &eq.output);
        let refuse = |why: String| bad(node, format!("Einsum '{}': {why}", attr_s(node, "equation")));
        for (which, t, other) in [("first", ta, tb), ("second", tb, ta)] {
            if let Some(l) = t.iter().find(|l| !other.contains(l) && !to.contains(l)) {
                return Err(refuse(format!(
                    "label '{l}' is summed within the {which} operand (not supported)"
                )));
            }
        }
        // Labels in output order, by kind.
        let batch: Vec<char> = to.iter().copied().filter(|l| ta.contains(l) && tb.contains(l)).collect();
        let left: Vec<char> = to.iter().copied().filter(|l| ta.contains(l) && !tb.contains(l)).collect();
        let right: Vec<char> = to.iter().copied().filter(|l| tb.contains(l) && !ta.contains(l)).collect();
        let contracted: Vec<char> =
            ta.iter().copied().filter(|l| tb.contains(l) && !to.contains(l)).collect();
        let (da, db) = (a.nd.dims(), b.nd.dims());
        let dim = |t: &[char], d: &[i64], l: char| t.iter().position(|&x| x == l).map(|i| d[i]);
        for &l in batch.iter().chain(&contracted) {
            if dim(ta, &da, l) != dim(tb, &db, l) {
                return Err(refuse(format!(
                    "label '{l}' has different sizes in {} and {} (broadcasting is not supported)",
                    show(&da),
                    show(&db)
                )));
            }
        }
        let holds_batch =
            |t: &[char], d: &[i64]| t.iter().zip(d).find(|(_, &x)| symbolic(x)).map(|(&l, _)| l);
        for (t, d) in [(ta, &da), (tb, &db)] {
            if let Some(l) = holds_batch(t, d) {
                if !batch.contains(&l) {
                    return Err(refuse(format!(
                        "the batch sits on label '{l}', which is not in both operands and the output"
                    )));
                }
            }
        }
        let product = |t: &[char], d: &[i64], ls: &[char]| -> Option<i64> {
            ls.iter().try_fold(1i64, |acc, &l| {
                acc.checked_mul(dim(t, d, l).and_then(|x| batch_factor(x).or(Some(x)))?)
            })
        };
        let size = |ls: &[char], t: &[char], d: &[i64]| {
            product(t, d, ls).ok_or_else(|| refuse("sizes overflow".into()))
        };
        let (m, k, n) = (size(&left, ta, &da)?, size(&contracted, ta, &da)?, size(&right, tb, &db)?);
        let lead: Vec<i64> = batch.iter().map(|&l| dim(ta, &da, l).unwrap_or(1)).collect();
        let order = |t: &[char], ls: Vec<&[char]>| -> Vec<usize> {
            ls.concat().iter().filter_map(|l| t.iter().position(|x| x == l)).collect()
        };
        let shaped =
            |lead: &[i64], x: i64, y: i64| -> Vec<i64> { lead.iter().copied().chain([x, y]).collect() };
        let a2 = a.permuted(&order(ta, vec![&batch, &left, &contracted]));
        let a2 = self.nd_reshape(node, &a2, &shaped(&lead, m, k))?;
        let b2 = b.permuted(&order(tb, vec![&batch, &contracted, &right]));
        let b2 = self.nd_reshape(node, &b2, &shaped(&lead, k, n))?;
        let prod = self.nd_matmul_values(node, &a2, &b2)?;
        // [batch…, left…, right…] then the output's order.
        let mut dims: Vec<i64> = lead.clone();
        dims.extend(left.iter().map(|&l| dim(ta, &da, l).unwrap_or(1)));
        dims.extend(right.iter().map(|&l| dim(tb, &db, l).unwrap_or(1)));
        let grouped = self.nd_reshape(node, &prod, &dims)?;
        let mut have: Vec<char> = batch.clone();
        have.extend(&left);
        have.extend(&right);
        let perm: Vec<usize> = to.iter().filter_map(|l| have.iter().position(|x| x == l)).collect();
        Ok(grouped.permuted(&perm))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn equations_parse_with_spaces_ellipses_and_implicit_outputs() {
        let e = parse("B G H I D, B G H J D -> B G H I J", &[5, 5]).unwrap();
        assert_eq!(e.inputs[0], vec!['B', 'G', 'H', 'I', 'D']);
        assert_eq!(e.output, vec!['B', 'G', 'H', 'I', 'J']);
        let e = parse("ij,jk", &[2, 2]).unwrap();
        assert_eq!(e.output, vec!['i', 'k']);
        let e = parse("...ij,...jk->...ik", &[4, 4]).unwrap();
        assert_eq!(e.inputs[0].len(), 4);
        assert_eq!(e.output.len(), 4);
        assert_eq!(e.output[2..], ['i', 'k']);
        assert!(parse("ij,jk->il", &[2, 2]).unwrap_err().contains("'l'"));
        assert!(parse("ij,jk", &[2, 3]).unwrap_err().contains("rank 3"));
        assert!(parse("ij->i", &[2, 2]).unwrap_err().contains("operand"));
        assert!(parse("i1,jk", &[2, 2]).unwrap_err().contains("'1'"));
    }
}

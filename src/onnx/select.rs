//! Comparisons and Where on activations: a comparison of an activation with a constant
//! becomes a step function (`Unary::Greater` and its kin: 1 or 0), and Where of three
//! activations of one shape a `select_elements` layer (torch.export writes softplus's
//! threshold this way: `Where(Greater(x, 20), x, Softplus(x))`).

use super::import::{bad, Importer};
use super::proto::NodeProto;
use super::tensor::symbolic;
use crate::error::Result;
use crate::network::{Op, Unary};

impl Importer<'_> {
    /// Greater, Less, Equal, GreaterOrEqual, LessOrEqual of an activation and a constant
    /// with one value (either side).
    pub(super) fn compare(&mut self, node: &NodeProto) -> Result<()> {
        if node.input.len() != 2 {
            return Err(bad(node, "needs two inputs"));
        }
        let constant = |k: usize| self.constants.get(&node.input[k]);
        let (x, s, value, flipped) = match (constant(0), constant(1)) {
            (None, Some(c)) => {
                let (x, s) = self.value_cl(node, 0)?;
                (x, s, c.clone(), false)
            }
            (Some(c), None) => {
                let (x, s) = self.value_cl(node, 1)?;
                (x, s, c.clone(), true)
            }
            _ => {
                return Err(bad(
                    node,
                    "comparing two activations is not supported (an activation with a constant is)",
                ))
            }
        };
        let [v] = value.floats[..] else {
            return Err(bad(
                node,
                format!("compares with a constant of {} values; only one value is supported", value.len()),
            ));
        };
        if value.int && symbolic(value.ints[0]) {
            return Err(bad(
                node,
                "compares with the batch size, which is only known when a plan is compiled",
            ));
        }
        // `c op x` is `x op' c` with the order reversed.
        let f = match (node.op_type.as_str(), flipped) {
            ("Greater", false) | ("Less", true) => Unary::Greater { than: v },
            ("Less", false) | ("Greater", true) => Unary::Less { than: v },
            ("GreaterOrEqual", false) | ("LessOrEqual", true) => Unary::GreaterOrEqual { than: v },
            ("LessOrEqual", false) | ("GreaterOrEqual", true) => Unary::LessOrEqual { than: v },
            _ => Unary::Equal { to: v },
        };
        self.push(node, Op::Unary(f), &[&x], s);
        Ok(())
    }

    /// Where(cond, a, b) of three activations of one shape.
    pub(super) fn where_op(&mut self, node: &NodeProto) -> Result<()> {
        if node.input.len() != 3 {
            return Err(bad(node, "needs three inputs (condition, a, b)"));
        }
        let parts = (0..3)
            .map(|k| self.value_cl(node, k))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| bad(node, format!("{e} (Where is supported on three activations of one shape)")))?;
        let s = parts[1].1;
        if parts.iter().any(|(_, t)| *t != s) {
            let dims: Vec<_> = parts.iter().map(|(_, t)| t.dims()).collect();
            return Err(bad(node, format!("operands of shapes {dims:?}; only equal shapes are supported")));
        }
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        self.push(node, Op::Where, &names, s);
        Ok(())
    }
}

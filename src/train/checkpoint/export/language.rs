//! A language model's weights as the book's PyTorch modules name them.
//!
//! GRU and LSTM models are the book's concise `RNNModel` (d2l 0.17 §8.6): `embedding.weight`
//! when the job has an embedding, the recurrent layers as one `nn.GRU`/`nn.LSTM` of
//! `num_layers` layers (`rnn.weight_ih_l{k}`, `rnn.weight_hh_l{k}`, `rnn.bias_ih_l{k}`,
//! `rnn.bias_hh_l{k}`, the gates stacked in PyTorch's order — GRU reset, update, new; LSTM input,
//! forget, cell, output — each `[hidden, in]`) and the head `linear.weight` `[vocab, hidden]`,
//! `linear.bias`. kiln's gates compute PyTorch's equations (the reset gate after the product, a
//! bias on both sides), so the numbers carry over as they are.
//!
//! The scratch RNN is the book's `RNNLMScratch` (§9.5): `rnn.W_xh` `[inputs, hidden]`,
//! `rnn.W_hh`, `rnn.b_h` (stacked layers as `rnn.rnns.{k}.…`, the book's `StackedRNNScratch`)
//! and the output `W_hq` `[hidden, vocab]`, `b_q`, untransposed: the book multiplies `X @ W`.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::TensorData;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::{each_float, f32_bytes, transpose};
use crate::models::RnnLm;

/// PyTorch's gate order within `nn.GRU`'s and `nn.LSTM`'s stacked weights, by Burn's field names.
const GRU_GATES: [&str; 3] = ["reset_gate", "update_gate", "new_gate"];
const LSTM_GATES: [&str; 4] = ["input_gate", "forget_gate", "cell_gate", "output_gate"];

/// The safetensors file of `model` under the book's names (see the module doc), with `metadata`.
///
/// # Panics
/// On a parameter path kiln's language models do not make.
pub fn safetensors(model: &RnnLm, metadata: HashMap<String, String>) -> Vec<u8> {
    let mut burn: BTreeMap<String, TensorData> = BTreeMap::new();
    each_float(model, |path, data| {
        burn.insert(path.to_string(), data);
    });
    let layers = burn
        .keys()
        .filter(|p| p.starts_with("layers."))
        .filter_map(|p| p.split('.').nth(1)?.parse::<usize>().ok());
    let layers = layers.max().map_or(0, |last| last + 1);
    let scratch = burn.keys().any(|p| p.contains(".Rnn."));
    let mut out: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    if let Some(weight) = burn.remove("embedding.weight") {
        out.insert("embedding.weight".into(), plain(weight));
    }
    let gru: Vec<bool> = (0..layers)
        .map(|k| burn.contains_key(&format!("layers.{k}.Gru.reset_gate.input_transform.weight")))
        .collect();
    let mut take = |path: &str| burn.remove(path).unwrap_or_else(|| panic!("no {path} in a language model"));
    for (k, &gru) in gru.iter().enumerate() {
        if scratch {
            let prefix = if layers == 1 { "rnn".to_string() } else { format!("rnn.rnns.{k}") };
            for (field, name) in [("w_xh", "W_xh"), ("w_hh", "W_hh"), ("b_h", "b_h")] {
                out.insert(format!("{prefix}.{name}"), plain(take(&format!("layers.{k}.Rnn.{field}"))));
            }
            continue;
        }
        let (kind, gates): (&str, &[&str]) = if gru { ("Gru", &GRU_GATES) } else { ("Lstm", &LSTM_GATES) };
        for (side, torch) in [("input_transform", "ih"), ("hidden_transform", "hh")] {
            let stacked = |leaf: &str, take: &mut dyn FnMut(&str) -> TensorData| {
                let parts: Vec<_> = gates
                    .iter()
                    .map(|gate| take(&format!("layers.{k}.{kind}.{gate}.{side}.{leaf}")))
                    .collect();
                stack(parts, leaf == "weight")
            };
            out.insert(format!("rnn.weight_{torch}_l{k}"), stacked("weight", &mut take));
            out.insert(format!("rnn.bias_{torch}_l{k}"), stacked("bias", &mut take));
        }
    }
    let (weight, bias) = (take("head.weight"), take("head.bias"));
    if scratch {
        out.insert("W_hq".into(), plain(weight));
        out.insert("b_q".into(), plain(bias));
    } else {
        out.insert("linear.weight".into(), transpose(weight));
        out.insert("linear.bias".into(), plain(bias));
    }
    assert!(burn.is_empty(), "language-model parameters without a PyTorch name: {:?}", burn.keys());
    let bytes: BTreeMap<String, (Vec<usize>, Vec<u8>)> =
        out.into_iter().map(|(name, (shape, values))| (name, (shape, f32_bytes(&values)))).collect();
    let views = bytes.iter().map(|(name, (shape, bytes))| {
        (name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes agree"))
    });
    safetensors::serialize(views, Some(metadata)).expect("a safetensors file of f32 tensors")
}

/// Data as it is: shape and values.
fn plain(data: TensorData) -> (Vec<usize>, Vec<f32>) {
    (data.shape().to_vec(), data.iter::<f32>().collect())
}

/// The gates' `[in, hidden]` weights as PyTorch's one `[gates * hidden, in]`, or their
/// `[hidden]` biases as one `[gates * hidden]`.
fn stack(parts: Vec<TensorData>, weights: bool) -> (Vec<usize>, Vec<f32>) {
    let mut rows = 0;
    let mut values = Vec::new();
    let mut cols = 0;
    for part in parts {
        let (shape, part) = if weights { transpose(part) } else { plain(part) };
        rows += shape[0];
        cols = shape.get(1).copied().unwrap_or(0);
        values.extend(part);
    }
    let shape = if weights { vec![rows, cols] } else { vec![rows] };
    (shape, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Cell, RnnLmConfig};
    use burn::tensor::Device;
    use safetensors::SafeTensors;

    /// Every Burn tensor of `model` by path, and every tensor of its export by name.
    fn both(config: RnnLmConfig) -> (BTreeMap<String, Vec<f32>>, BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
        let model = config.init(&Device::flex());
        let mut burn = BTreeMap::new();
        each_float(&model, |path, data| {
            burn.insert(path.to_string(), data.iter::<f32>().collect());
        });
        let file = safetensors(&model, HashMap::new());
        let read = SafeTensors::deserialize(&file).unwrap();
        let torch = read.tensors().into_iter().map(|(name, view)| {
            let values =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (name, (view.shape().to_vec(), values))
        });
        (burn, torch.collect())
    }

    #[test]
    fn lstm_gates_stack_in_pytorchs_order_transposed() {
        let config = RnnLmConfig::new(7, Cell::Lstm).with_hidden(3).with_layers(2);
        let (burn, torch) = both(config);
        let names: Vec<&str> = torch.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "linear.bias",
                "linear.weight",
                "rnn.bias_hh_l0",
                "rnn.bias_hh_l1",
                "rnn.bias_ih_l0",
                "rnn.bias_ih_l1",
                "rnn.weight_hh_l0",
                "rnn.weight_hh_l1",
                "rnn.weight_ih_l0",
                "rnn.weight_ih_l1",
            ]
        );
        let (shape, w) = &torch["rnn.weight_ih_l0"];
        assert_eq!(shape, &[12, 7], "four gates of 3 rows over 7 one-hot inputs");
        // Row 3 + j is the forget gate's unit j: column j of Burn's [in, out] weight.
        let forget = &burn["layers.0.Lstm.forget_gate.input_transform.weight"];
        for j in 0..3 {
            for i in 0..7 {
                assert_eq!(w[(3 + j) * 7 + i], forget[i * 3 + j]);
            }
        }
        let (_, b) = &torch["rnn.bias_hh_l1"];
        assert_eq!(b[9..12], burn["layers.1.Lstm.output_gate.hidden_transform.bias"][..]);
        let (shape, head) = &torch["linear.weight"];
        assert_eq!(shape, &[7, 3]);
        assert_eq!(head[1], burn["head.weight"][7], "[vocab, hidden] from Burn's [hidden, vocab]");
    }

    #[test]
    fn gru_puts_reset_first_and_the_scratch_rnn_keeps_the_books_names() {
        let config = RnnLmConfig::new(5, Cell::Gru).with_hidden(2).with_embedding(Some(4));
        let (burn, torch) = both(config);
        assert_eq!(torch["embedding.weight"].1, burn["embedding.weight"]);
        let (shape, b) = &torch["rnn.bias_ih_l0"];
        assert_eq!(shape, &[6]);
        assert_eq!(b[..2], burn["layers.0.Gru.reset_gate.input_transform.bias"][..]);
        assert_eq!(b[2..4], burn["layers.0.Gru.update_gate.input_transform.bias"][..]);
        assert_eq!(b[4..], burn["layers.0.Gru.new_gate.input_transform.bias"][..]);

        let (burn, torch) = both(RnnLmConfig::new(5, Cell::Rnn).with_hidden(2));
        let names: Vec<&str> = torch.keys().map(String::as_str).collect();
        assert_eq!(names, ["W_hq", "b_q", "rnn.W_hh", "rnn.W_xh", "rnn.b_h"]);
        assert_eq!(torch["rnn.W_xh"], (vec![5, 2], burn["layers.0.Rnn.w_xh"].clone()));
        assert_eq!(torch["W_hq"], (vec![2, 5], burn["head.weight"].clone()));
        let (_, torch) = both(RnnLmConfig::new(5, Cell::Rnn).with_hidden(2).with_layers(2));
        assert!(torch.contains_key("rnn.rnns.1.W_hh"), "{:?}", torch.keys());
    }
}

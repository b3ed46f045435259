//! A classifier's weights as PyTorch names them, in a safetensors file: what
//! `GET /jobs/{id}/checkpoints/{checkpoint_id}?format=safetensors` serves.
//!
//! Burnpack stays the checkpoint format; this is a translation of one, made on request.
//!
//! Every image classifier is a layer list, and its PyTorch twin is the `nn.Sequential` of the
//! same layers, as the book writes LeNet-BN: layer `i`'s weights are `{i}.weight`, `{i}.bias`,
//! and a BatchNorm's also `{i}.running_mean`, `{i}.running_var` and `{i}.num_batches_tracked`
//! (the steps trained, an int64 scalar, as PyTorch counts them). Linear weights are transposed
//! to PyTorch's `[out, in]`; convolutions already agree. The book's blocks keep the names of its
//! own classes: a `residual` layer is its `Residual` (`conv1`, `bn1`, `conv2`, `bn2` and the 1×1
//! `conv3` on the shortcut), a `dense_block` its `DenseBlock` (`net.{j}.0` the BatchNorm and
//! `net.{j}.2` the convolution of conv block `j`), a `transition` its `transition_block`
//! (`0` the BatchNorm, `2` the convolution). So `load_state_dict(load_file(f), strict=True)`
//! works on a flat `nn.Sequential` of those layers — the book's LeNet-BN as it is (d2l's
//! `BNLeNet` keeps it as `self.net`: load into `model.net`). The book nests ResNet's and
//! DenseNet's stages (`b1` … `b5`); those need their keys mapped.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// One tensor of the file: its shape and little-endian bytes.
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Calls `f` with every float tensor of `model` and its Burn path (`layers.0.Conv2d.weight`),
/// in the order the module visits them.
pub(crate) fn each_float<M: Module>(model: &M, f: impl FnMut(&str, TensorData)) {
    struct Walk<F> {
        path: Vec<String>,
        f: F,
    }
    impl<F: FnMut(&str, TensorData)> ModuleVisitor for Walk<F> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            (self.f)(&self.path.join("."), param.val().into_data());
        }
    }
    model.visit(&mut Walk { path: Vec::new(), f });
}

/// What a Burn path becomes in PyTorch: the name, and whether the tensor is a Linear weight
/// (transposed). `None` for a path kiln does not make.
fn torch_name(path: &str) -> Option<(String, bool)> {
    let parts: Vec<&str> = path.split('.').collect();
    let (index, kind, rest) = match parts.as_slice() {
        ["layers", index, kind, rest @ ..] => (*index, *kind, rest),
        _ => return None,
    };
    let (inner, leaf): (Vec<&str>, &str) = match (kind, rest) {
        ("Conv2d" | "Linear" | "BatchNorm", [leaf]) => (vec![], leaf),
        ("Residual", [part, leaf]) => match *part {
            "shortcut" => (vec!["conv3"], leaf),
            "conv1" | "bn1" | "conv2" | "bn2" => (vec![part], leaf),
            _ => return None,
        },
        ("DenseBlock", ["convs", j, part, leaf]) => (vec!["net", j, position(part)?], leaf),
        ("Transition", [part, leaf]) => (vec![position(part)?], leaf),
        _ => return None,
    };
    let leaf = match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        "weight" | "bias" | "running_mean" | "running_var" => leaf,
        _ => return None,
    };
    let name = std::iter::once(index).chain(inner).chain([leaf]).collect::<Vec<_>>().join(".");
    Some((name, kind == "Linear" && leaf == "weight"))
}

/// A block's BatchNorm and convolution, by their place in the book's `nn.Sequential(BN, ReLU,
/// Conv, ...)`.
fn position(part: &str) -> Option<&'static str> {
    match part {
        "bn" => Some("0"),
        "conv" => Some("2"),
        _ => None,
    }
}

/// `[rows, cols]` f32 data as `[cols, rows]`.
fn transpose(data: TensorData) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (data.shape()[0], data.shape()[1]);
    let values: Vec<f32> = data.iter::<f32>().collect();
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    (vec![cols, rows], out)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The safetensors file of `model`'s weights under PyTorch's names, `steps` as every
/// BatchNorm's `num_batches_tracked`, and `metadata` in the header (e.g. the definition).
///
/// # Panics
/// On a parameter path kiln's layers do not make: the names are kiln's own.
pub fn safetensors<M: Module>(model: &M, steps: u64, metadata: HashMap<String, String>) -> Vec<u8> {
    // Each tensor becomes its bytes as it is met, so the model is copied once, not twice.
    let mut entries = BTreeMap::new();
    each_float(model, |path, data| {
        let (name, linear) = torch_name(path).unwrap_or_else(|| panic!("no PyTorch name for {path}"));
        let (shape, values) =
            if linear { transpose(data) } else { (data.shape().to_vec(), data.iter::<f32>().collect()) };
        if let Some(bn) = name.strip_suffix(".running_var") {
            let tracked =
                Entry { dtype: Dtype::I64, shape: Vec::new(), bytes: (steps as i64).to_le_bytes().to_vec() };
            entries.insert(format!("{bn}.num_batches_tracked"), tracked);
        }
        entries.insert(name, Entry { dtype: Dtype::F32, shape, bytes: f32_bytes(&values) });
    });
    let views = entries.iter().map(|(name, e)| {
        let view = TensorView::new(e.dtype, e.shape.clone(), &e.bytes).expect("sizes agree");
        (name.clone(), view)
    });
    safetensors::serialize(views, Some(metadata)).expect("a safetensors file of f32 and i64 tensors")
}

pub mod language;

#[cfg(test)]
mod tests;

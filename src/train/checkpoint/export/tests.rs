//! The export against PyTorch's own `state_dict`s of the book's networks
//! (`tests/fixtures/torch-state-dicts.json`, written by `bench/torch_state_dicts.py`).

use std::collections::{BTreeMap, HashMap};

use burn::module::Module;
use burn::tensor::Device;
use safetensors::{Dtype, SafeTensors};

use super::{each_float, safetensors};
use crate::data::ImageShape;
use crate::models::ClassifierSpec;

/// PyTorch's names and shapes, by network.
fn torch() -> BTreeMap<String, BTreeMap<String, Vec<usize>>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch-state-dicts.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn square(side: usize) -> ImageShape {
    ImageShape { channels: 1, height: side, width: side }
}

#[test]
fn each_book_network_exports_pytorchs_state_dict_names_and_shapes() {
    let torch = torch();
    let cases = [
        ("lenet_bn", ClassifierSpec::LenetBn { batch_norm: true }, 28),
        ("resnet", ClassifierSpec::Resnet { depth: 18, widths: vec![4, 8], blocks: vec![2, 1] }, 16),
        (
            "densenet",
            ClassifierSpec::Densenet { growth_rate: 4, blocks: vec![2, 2, 1], stem_channels: 8 },
            16,
        ),
    ];
    for (name, spec, side) in cases {
        let model = spec.init(square(side), 10, &Device::flex());
        let file = safetensors(&model, 7, HashMap::new());
        let read = SafeTensors::deserialize(&file).unwrap();
        let exported: BTreeMap<String, Vec<usize>> =
            read.tensors().into_iter().map(|(n, view)| (n, view.shape().to_vec())).collect();
        assert_eq!(exported, torch[name], "{name}");
    }
}

/// Every float tensor of a module by its Burn path, flat.
fn values<M: Module>(model: &M) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let mut values = HashMap::new();
    each_float(model, |path, data| {
        values.insert(path.to_string(), (data.shape().to_vec(), data.iter::<f32>().collect()));
    });
    values
}

fn floats(read: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let view = read.tensor(name).unwrap();
    assert_eq!(view.dtype(), Dtype::F32, "{name}");
    view.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

#[test]
fn linear_weights_are_transposed_and_batch_norm_keeps_its_values_under_pytorchs_names() {
    let model = ClassifierSpec::LenetBn { batch_norm: true }.init(square(28), 10, &Device::flex());
    let metadata = HashMap::from([("kiln.definition".to_string(), "{}".to_string())]);
    let file = safetensors(&model, 1234, metadata);
    let read = SafeTensors::deserialize(&file).unwrap();
    let burn = values(&model);

    // Burn keeps Linear(84 → 10) as [84, 10]; PyTorch as [10, 84].
    let (shape, weight) = &burn["layers.15.Linear.weight"];
    assert_eq!(shape, &[84, 10]);
    let torch = floats(&read, "15.weight");
    for (row, col) in [(0, 0), (3, 71), (9, 83)] {
        assert_eq!(torch[row * 84 + col], weight[col * 10 + row], "[{row}, {col}]");
    }
    assert_eq!(floats(&read, "0.weight"), burn["layers.0.Conv2d.weight"].1, "convolutions agree as they are");
    assert_eq!(floats(&read, "5.weight"), burn["layers.5.BatchNorm.gamma"].1);
    assert_eq!(floats(&read, "5.bias"), burn["layers.5.BatchNorm.beta"].1);
    assert_eq!(floats(&read, "5.running_var"), burn["layers.5.BatchNorm.running_var"].1);
    let tracked = read.tensor("13.num_batches_tracked").unwrap();
    assert_eq!((tracked.dtype(), tracked.shape()), (Dtype::I64, &[][..]));
    assert_eq!(i64::from_le_bytes(tracked.data().try_into().unwrap()), 1234);

    let (_, header) = SafeTensors::read_metadata(&file).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["kiln.definition"], "{}");
}

#[test]
fn every_layer_kind_exports_each_tensor_once_and_a_count_per_batch_norm() {
    let layers = serde_json::json!([
        {"conv2d": {"out": 4, "kernel": 3, "padding": 1}}, {"batch_norm": {}}, {"gelu": {}},
        {"max_pool2d": {"kernel": 2}}, {"residual": {"out": 4}}, {"residual": {"out": 6, "stride": 2}},
        {"dense_block": {"convs": 2, "growth": 2}}, {"transition": {"out": 4}}, {"tanh": {}},
        {"avg_pool2d": {"kernel": 2}}, {"global_avg_pool": {}}, {"flatten": {}}, {"dropout": {"p": 0.5}},
        {"linear": {"out": 8}}, {"batch_norm": {}}, {"relu": {}}, {"sigmoid": {}}, {"linear": {"out": 10}}
    ]);
    let spec: ClassifierSpec =
        serde_json::from_value(serde_json::json!({"kind": "sequential", "layers": layers})).unwrap();
    let model = spec.init(square(16), 10, &Device::flex());
    let file = safetensors(&model, 3, HashMap::new());
    let read = SafeTensors::deserialize(&file).unwrap();
    let burn = values(&model);
    // 2 BatchNorm layers, 2 in each residual block, 2 in the dense block, 1 in the transition.
    let batch_norms = 2 + 2 * 2 + 2 + 1;
    assert_eq!(read.len(), burn.len() + batch_norms);
    let names = read.names();
    for expected in [
        "4.conv1.weight",
        "5.conv3.weight",
        "6.net.1.0.running_var",
        "7.2.weight",
        "13.weight",
        "14.num_batches_tracked",
        "17.bias",
    ] {
        assert!(names.iter().any(|n| *n == expected), "{expected} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("4.conv3")),
        "a block that keeps the shape has no projection"
    );
}

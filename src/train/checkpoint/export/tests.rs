//! The export against PyTorch's own `state_dict`s of the book's networks
//! (`tests/fixtures/torch-state-dicts.json`, written by `bench/torch_state_dicts.py`).

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use super::safetensors;
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
    #[derive(Default)]
    struct Walk(Vec<String>, HashMap<String, (Vec<usize>, Vec<f32>)>);
    impl ModuleVisitor for Walk {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data();
            self.1.insert(self.0.join("."), (data.shape().to_vec(), data.iter::<f32>().collect()));
        }
    }
    let mut walk = Walk::default();
    model.visit(&mut walk);
    walk.1
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

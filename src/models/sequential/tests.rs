//! Layer lists against hand-computed shapes and parameter counts, the book's seed network, the
//! problems a list can have, and the built module against its plan.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde_json::json;

use super::*;
use crate::models::materialize;

fn layers(value: serde_json::Value) -> Vec<LayerSpec> {
    serde_json::from_value(value).unwrap()
}

fn maps(channels: usize, side: usize) -> Shape {
    Shape::Maps { channels, side }
}

/// The batch-normalization chapter's small network, its first linear layer's `in` as given.
fn seed(linear_in: Option<usize>) -> Vec<LayerSpec> {
    let mut linear = json!({"out": 10});
    if let Some(n) = linear_in {
        linear["in"] = json!(n);
    }
    layers(json!([
        {"conv2d": {"out": 6, "kernel": 5}}, {"batch_norm": {}}, {"sigmoid": {}},
        {"avg_pool2d": {"kernel": 2, "stride": 2}}, {"flatten": {}},
        {"linear": linear}, {"batch_norm": {}}, {"sigmoid": {}}, {"linear": {"out": 10}}
    ]))
}

#[test]
fn the_seed_network_is_refused_at_its_linear_layer_with_both_widths_and_planned_without_them() {
    let problems = plan(&seed(Some(36)), maps(1, 12), 10).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        "model.layers[5] (linear): expects 36 inputs, the layer before gives 96 (6×4×4)"
    );

    let planned = plan(&seed(None), maps(1, 12), 10).unwrap();
    let shapes: Vec<Shape> = planned.layers.iter().map(|l| l.output).collect();
    let conv = maps(6, 8);
    assert_eq!(
        shapes,
        [conv, conv, conv, maps(6, 4), Shape::Flat(96)]
            .into_iter()
            .chain([Shape::Flat(10); 4])
            .collect::<Vec<_>>()
    );
    let counts: Vec<usize> = planned.layers.iter().map(|l| l.parameters).collect();
    // Conv 6·1·25+6, BatchNorm2d 2·6, Linear 96·10+10, BatchNorm1d 2·10, Linear 10·10+10.
    assert_eq!(counts, [156, 12, 0, 0, 0, 970, 20, 0, 110]);
    assert_eq!(planned.parameters(), 1_268);
    let given = plan(&seed(Some(96)), maps(1, 12), 10).expect("a matching `in` is accepted");
    let sizes = |p: &Plan| p.layers.iter().map(|l| (l.output, l.parameters)).collect::<Vec<_>>();
    assert_eq!(sizes(&given), sizes(&planned));
}

#[test]
fn each_layer_kind_gives_its_hand_computed_shape_and_parameters() {
    let cases = [
        (
            json!({"conv2d": {"out": 8, "kernel": 3, "stride": 2, "padding": 1}}),
            maps(3, 28),
            maps(8, 14),
            8 * 3 * 9 + 8,
        ),
        (json!({"batch_norm": {}}), maps(5, 7), maps(5, 7), 10),
        (json!({"batch_norm": {}}), Shape::Flat(30), Shape::Flat(30), 60),
        (json!({"linear": {"out": 7}}), Shape::Flat(20), Shape::Flat(7), 20 * 7 + 7),
        (json!({"relu": {}}), maps(2, 3), maps(2, 3), 0),
        (json!({"gelu": {}}), Shape::Flat(4), Shape::Flat(4), 0),
        (json!({"tanh": {}}), Shape::Flat(4), Shape::Flat(4), 0),
        (json!({"avg_pool2d": {"kernel": 3}}), maps(4, 10), maps(4, 3), 0),
        (json!({"max_pool2d": {"kernel": 3, "stride": 2, "padding": 1}}), maps(1, 28), maps(1, 14), 0),
        (json!({"global_avg_pool": {}}), maps(16, 7), maps(16, 1), 0),
        (json!({"flatten": {}}), maps(6, 4), Shape::Flat(96), 0),
        (json!({"dropout": {"p": 0.5}}), Shape::Flat(9), Shape::Flat(9), 0),
        // Two 3×3 convolutions (4→8 with stride 2, 8→8), two BatchNorms, a 1×1 shortcut 4→8.
        (json!({"residual": {"out": 8, "stride": 2}}), maps(4, 28), maps(8, 14), 296 + 16 + 584 + 16 + 40),
        (json!({"residual": {"out": 4}}), maps(4, 9), maps(4, 9), 2 * (4 * 4 * 9 + 4 + 8)),
        // BN(8) + Conv 8→4, then BN(12) + Conv 12→4.
        (json!({"dense_block": {"convs": 2, "growth": 4}}), maps(8, 7), maps(16, 7), (16 + 292) + (24 + 436)),
        // BN(16) + Conv1×1 16→6, pooled by 2.
        (json!({"transition": {"out": 6}}), maps(16, 14), maps(6, 7), 32 + 96 + 6),
    ];
    for (layer, input, output, parameters) in cases {
        let spec: LayerSpec = serde_json::from_value(layer.clone()).unwrap();
        let step = step(&spec, input, None).unwrap_or_else(|e| panic!("{layer}: {e}"));
        assert_eq!((step.output, step.parameters), (output, parameters), "{layer}");
    }
}

#[test]
fn mistakes_are_named_by_layer_with_the_shapes() {
    let cases = [
        (
            json!([{"linear": {"out": 10}}]),
            "model.layers[0] (linear): needs a flat input; the layer before gives 1×12×12",
        ),
        (
            json!([{"conv2d": {"out": 4, "kernel": 13}}]),
            "model.layers[0] (conv2d): a 13×13 kernel with padding 0 does not fit the 12×12 maps",
        ),
        (
            json!([{"flatten": {}}, {"conv2d": {"out": 4, "kernel": 3}}]),
            "model.layers[1] (conv2d): needs feature maps (channels×height×width); the layer before gives 144 values",
        ),
        (
            json!([{"conv2d": {"out": 4, "kernel": 3, "in": 3}}, {"flatten": {}}, {"linear": {"out": 10}}]),
            "model.layers[0] (conv2d): expects 3 input channels, the layer before gives 1",
        ),
        (
            json!([{"flatten": {}}, {"linear": {"out": 2}}]),
            "model.layers[1] (linear): the last layer gives 2; a classifier for this data set ends in 10 values",
        ),
        (
            json!([{"conv2d": {"out": 10, "kernel": 12}}]),
            "model.layers[0] (conv2d): the last layer gives 10×1×1",
        ),
        (
            json!([{"max_pool2d": {"kernel": 2, "padding": 2}}]),
            "model.layers[0] (max_pool2d): padding 2 is more than half the kernel 2",
        ),
    ];
    for (list, expected) in cases {
        let problems = plan(&layers(list.clone()), maps(1, 12), 10).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.starts_with(expected)), "{list}: {text:#?}");
    }
}

#[test]
fn a_wrong_width_does_not_stop_the_walk() {
    let list = layers(json!([{"flatten": {}}, {"linear": {"in": 5, "out": 7}}, {"linear": {"out": 3}}]));
    let problems = plan(&list, maps(1, 4), 10).unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(
        text[0].starts_with("model.layers[1] (linear): expects 5 inputs, the layer before gives 16 (1×4×4)")
    );
    assert!(text[1].starts_with("model.layers[2] (linear): the last layer gives 3"), "{text:#?}");
}

#[test]
fn the_built_network_has_the_planned_parameters_and_output() {
    let list = layers(json!([
        {"conv2d": {"out": 4, "kernel": 3, "padding": 1}}, {"batch_norm": {}}, {"relu": {}},
        {"residual": {"out": 8, "stride": 2}}, {"dense_block": {"convs": 2, "growth": 4}},
        {"transition": {"out": 6}}, {"max_pool2d": {"kernel": 2}}, {"global_avg_pool": {}}, {"flatten": {}},
        {"dropout": {"p": 0.3}}, {"linear": {"out": 12}}, {"batch_norm": {}}, {"gelu": {}}, {"tanh": {}},
        {"sigmoid": {}}, {"linear": {"out": 10}}
    ]));
    let planned = plan(&list, maps(1, 28), 10).unwrap();
    let device = Device::flex().autodiff();
    let model = Sequential::new(&planned, &device);
    assert_eq!(materialize(&model), planned.parameters());
    let logits = model.forward(Tensor::zeros([3, 1, 28, 28], &device));
    assert_eq!(logits.dims(), [3, 10]);
}

#[test]
fn dropout_drops_in_training_and_is_off_in_evaluation() {
    let list = layers(json!([{"flatten": {}}, {"dropout": {"p": 0.5}}]));
    let planned = plan(&list, maps(1, 20), 400).unwrap();
    let device = Device::flex();
    let model = Sequential::new(&planned, &device.clone().autodiff());
    let ones = |device: &Device| Tensor::<4>::ones([2, 1, 20, 20], device);
    let trained: Vec<f32> =
        model.forward(ones(&device.clone().autodiff())).into_data().try_to_vec::<f32>().unwrap();
    let zeros = trained.iter().filter(|v| **v == 0.0).count();
    assert!((200..600).contains(&zeros), "about half of 800 dropped: {zeros}");
    assert!(trained.iter().all(|v| *v == 0.0 || (*v - 2.0).abs() < 1e-6), "the rest scaled by 1/(1-p)");
    let evaluated: Vec<f32> = model.valid().forward(ones(&device)).into_data().try_to_vec::<f32>().unwrap();
    assert!(evaluated.iter().all(|v| *v == 1.0), "no dropout in evaluation");
}

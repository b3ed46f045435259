//! Tests of the model configs: parameter counts and output shapes of the built networks.

use super::*;

const MNIST: ImageShape = ImageShape { channels: 1, height: 28, width: 28 };

#[test]
fn lenet_bn_has_the_books_44878_parameters() {
    let spec = ClassifierSpec::LenetBn { batch_norm: true };
    let model = spec.init(MNIST, 10, &Device::flex().autodiff());
    assert_eq!(materialize(&model), 44_878);
    assert_eq!(spec.parameter_count(MNIST), 44_878);
    // Burn's own count includes the running mean and variance of the four BatchNorms.
    assert_eq!(model.num_params(), 44_878 + 2 * (6 + 16 + 120 + 84));
}

#[test]
fn resnet18_and_densenet_have_the_books_parameter_counts() {
    let device = Device::flex().autodiff();
    for (spec, expected) in
        [(ClassifierSpec::resnet18(), 11_178_378), (ClassifierSpec::densenet_book(), 758_226)]
    {
        assert_eq!(spec.parameter_count(MNIST), expected, "{spec:?}");
        assert_eq!(materialize(&spec.init(MNIST, 10, &device)), expected, "{spec:?}");
    }
}

#[test]
fn resnet_and_densenet_classify_28_and_96_pixel_images() {
    let device = Device::flex();
    let small_resnet = ClassifierSpec::Resnet { depth: 18, widths: vec![8, 16], blocks: vec![1, 1] };
    let small_densenet = ClassifierSpec::Densenet { growth_rate: 4, blocks: vec![2, 2], stem_channels: 8 };
    assert!(!ClassifierSpec::densenet_book().fits(28), "four dense blocks pool 28 pixels away");
    assert_eq!(ClassifierSpec::LenetBn { batch_norm: true }.smallest_side(), 16);
    for spec in [ClassifierSpec::resnet18(), ClassifierSpec::densenet_book(), small_resnet, small_densenet] {
        let model = spec.init(MNIST, 10, &device);
        for side in [28, 96].into_iter().filter(|s| spec.fits(*s)) {
            let logits = model.forward(Tensor::zeros([2, 1, side, side], &device));
            assert_eq!(logits.dims(), [2, 10], "{spec:?} at {side}");
        }
    }
}

#[test]
fn parameter_counts_match_the_built_modules() {
    let specs = [
        ClassifierSpec::Resnet { depth: 34, widths: vec![8, 16, 32], blocks: vec![3, 4, 6] },
        ClassifierSpec::Densenet { growth_rate: 12, blocks: vec![3, 2, 5], stem_channels: 24 },
        ClassifierSpec::LenetBn { batch_norm: false },
        ClassifierSpec::MlpBn { hidden: vec![256, 128], activation: Activation::Relu, batch_norm: true },
        ClassifierSpec::MlpBn { hidden: vec![32], activation: Activation::Sigmoid, batch_norm: false },
    ];
    for spec in specs {
        let model = spec.init(MNIST, 10, &Device::flex().autodiff());
        assert_eq!(materialize(&model), spec.parameter_count(MNIST), "{spec:?}");
    }
}

#[test]
fn classifiers_map_a_batch_of_images_to_class_logits() {
    let device = Device::flex();
    for spec in [
        ClassifierSpec::LenetBn { batch_norm: true },
        ClassifierSpec::MlpBn { hidden: vec![16], activation: Activation::Relu, batch_norm: true },
    ] {
        let logits = spec.init(MNIST, 10, &device).forward(Tensor::zeros([3, 1, 28, 28], &device));
        assert_eq!(logits.dims(), [3, 10], "{spec:?}");
    }
}

#[test]
fn activation_estimates_grow_with_image_size_and_depth() {
    let at = |side| ImageShape { channels: 1, height: side, width: side };
    let resnet = ClassifierSpec::resnet18();
    assert!(resnet.activation_floats(at(96)) > 10 * resnet.activation_floats(at(28)));
    let deeper =
        ClassifierSpec::Resnet { depth: 34, widths: vec![64, 128, 256, 512], blocks: vec![3, 4, 6, 3] };
    assert!(deeper.activation_floats(at(96)) > resnet.activation_floats(at(96)));
    let lenet = ClassifierSpec::LenetBn { batch_norm: true };
    assert!(lenet.activation_floats(MNIST) < resnet.activation_floats(MNIST));
    for spec in [resnet, ClassifierSpec::densenet_book(), lenet] {
        println!("{spec:?}: {} floats per example at 96", spec.activation_floats(at(96)));
    }
}

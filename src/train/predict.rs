//! A trained classifier's answer for a batch of images: for each, the `top_k` likeliest classes
//! and their softmax probabilities, likeliest first. The images go through [`super::fit::batch`],
//! so they are resized as the job's training and evaluation batches were; the model runs in
//! evaluation mode (BatchNorm on its running statistics) on the device it was loaded on.

use burn::tensor::Device;
use burn::tensor::activation::softmax;

use super::fit::batch;
use crate::data::ImageSet;
use crate::models::Classifier;

/// Images run through the model at once: the activations of a big model at a big side stay
/// within memory.
const CHUNK: usize = 32;

/// For each image of `set`, its `top_k` likeliest labels and their probabilities.
pub fn predict(model: &Classifier, set: &ImageSet, top_k: usize, device: &Device) -> Vec<Vec<(usize, f32)>> {
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut ranked = Vec::with_capacity(set.len());
    for chunk in indices.chunks(CHUNK) {
        let (images, _) = batch(set, chunk, device);
        let probabilities = softmax(model.forward(images), 1);
        let [_, classes] = probabilities.dims();
        let values =
            probabilities.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 probabilities");
        for row in values.chunks(classes) {
            let mut order: Vec<usize> = (0..classes).collect();
            // Likeliest first; equal probabilities keep label order.
            order.sort_by(|a, b| row[*b].total_cmp(&row[*a]).then(a.cmp(b)));
            ranked.push(order.into_iter().take(top_k).map(|label| (label, row[label])).collect());
        }
    }
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageShape;
    use crate::models::ClassifierSpec;

    #[test]
    fn each_image_gets_its_top_k_likeliest_first_and_all_classes_sum_to_one() {
        let device = Device::flex();
        let shape = ImageShape { channels: 1, height: 28, width: 28 };
        let model = ClassifierSpec::LenetBn { batch_norm: true }.init(shape, 10, &device);
        let n = CHUNK + 3;
        let pixels = (0..n * shape.len()).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let set = ImageSet { shape, pixels, labels: vec![0; n], resize: None };

        let all = predict(&model, &set, 10, &device);
        let top = predict(&model, &set, 3, &device);
        assert_eq!((all.len(), top.len()), (n, n), "every image of both chunks");
        for (all, top) in all.iter().zip(&top) {
            let sum: f32 = all.iter().map(|(_, p)| p).sum();
            assert!((sum - 1.0).abs() < 1e-5, "{sum}");
            assert!(all.windows(2).all(|w| w[0].1 >= w[1].1), "{all:?}");
            let mut labels: Vec<usize> = all.iter().map(|(label, _)| *label).collect();
            labels.sort_unstable();
            assert_eq!(labels, (0..10).collect::<Vec<_>>());
            assert_eq!(top[..], all[..3]);
        }
        let (images, _) = batch(&set, &[n - 1], &device);
        let argmax =
            model.forward(images).argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(top[n - 1][0].0 as i64, argmax[0]);
    }
}

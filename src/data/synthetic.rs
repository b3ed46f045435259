//! Generated image data for tests and demos: learnable without being trivial.
//!
//! Class `c` of 10 lights a 8x8 square at one of ten fixed places on the grid, and a class-
//! dependent stripe, at random brightness, shifted by up to two pixels, over uniform noise. A
//! small convolutional net or MLP separates the classes to high accuracy within a few epochs;
//! a net that learns nothing stays near 10%.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{ImageSet, ImageShape};

/// Top-left corners of each class's square, on a 28x28 canvas.
const CORNERS: [(usize, usize); 10] =
    [(2, 2), (2, 10), (2, 18), (10, 2), (10, 10), (10, 18), (18, 2), (18, 10), (18, 18), (6, 6)];

/// `n` images of `shape` (one channel is filled; others copy it), labels cycling 0..10 shuffled.
pub fn images(shape: ImageShape, n: usize, seed: u64) -> ImageSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let (h, w) = (shape.height, shape.width);
    let mut pixels = Vec::with_capacity(n * shape.len());
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let class = rng.random_range(0..10usize);
        let mut image: Vec<f32> = (0..h * w).map(|_| rng.random_range(0.0..0.35)).collect();
        let (dy, dx) = (rng.random_range(0..5usize), rng.random_range(0..5usize));
        let brightness = rng.random_range(0.5..1.0f32);
        let (top, left) = CORNERS[class];
        for y in (top + dy).saturating_sub(2)..(top + dy + 6).min(h) {
            for x in (left + dx).saturating_sub(2)..(left + dx + 6).min(w) {
                image[y * w + x] = (image[y * w + x] + brightness).min(1.0);
            }
        }
        // A stripe whose row depends on the class, so classes differ in more than one place.
        let row = (2 + class * 2 + dy / 2).min(h - 1);
        for x in 0..w {
            image[row * w + x] = (image[row * w + x] + 0.4 * brightness).min(1.0);
        }
        for _ in 0..shape.channels {
            pixels.extend_from_slice(&image);
        }
        labels.push(class as u16);
    }
    ImageSet { shape, pixels, labels, resize: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_images_and_every_class_appears() {
        let shape = ImageShape { channels: 1, height: 28, width: 28 };
        let a = images(shape, 500, 9);
        let b = images(shape, 500, 9);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.pixels.len(), 500 * 784);
        assert!(a.pixels.iter().all(|p| (0.0..=1.0).contains(p)));
        for class in 0..10u16 {
            assert!(a.labels.contains(&class), "class {class} missing");
        }
        assert_ne!(a.pixels, images(shape, 500, 10).pixels);
    }
}

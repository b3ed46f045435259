//! Gradient clipping by the global norm of all gradients together, as the book's
//! `grad_clipping`: with g every gradient of the model concatenated, g ← min(1, θ/‖g‖)·g.
//!
//! Burn's `GradientClipping::Norm` scales each parameter's gradient by that tensor's own norm,
//! which changes the direction of the update whenever some tensors are clipped and others are
//! not; this rule scales every gradient by the same factor, so the direction is kept.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// The squared global L2 norm of `grads` over `model`'s float parameters, before any clipping,
/// on the device (`[1]`); `None` when the model has no gradient.
pub fn global_norm_sq<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    struct SumOfSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumOfSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + s,
                    None => s,
                });
            }
        }
    }
    let mut visitor = SumOfSquares { grads, total: None };
    model.visit(&mut visitor);
    visitor.total
}

/// Scales every gradient of `model` in `grads` by `factor` (`[1]`, on the device).
fn scale<M: Module>(model: &M, grads: &mut GradientsParams, factor: Tensor<1>) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: Tensor<1>,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let factor: Tensor<D> = self.factor.clone().reshape([1usize; D]);
                self.grads.register(param.id, g.mul(factor));
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}

/// Clips `grads` to global norm `max_norm` when it is set, by the factor min(1, θ/‖g‖) chosen on
/// the device (no read back): θ/‖g‖ where ‖g‖ > θ, else exactly 1 (a NaN norm too, which the
/// next read reports). Returns the squared norm before clipping, which training reports whether
/// or not it clips.
pub fn clip_global_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: Option<f64>,
) -> Option<Tensor<1>> {
    let norm_sq = global_norm_sq(model, grads)?;
    if let Some(theta) = max_norm {
        let norm = norm_sq.clone().sqrt();
        let over = norm.clone().greater_elem(theta);
        let factor = norm.ones_like().mask_where(over, norm.recip().mul_scalar(theta));
        scale(model, grads, factor);
    }
    Some(norm_sq)
}

/// The global norm of `grads`, read back to the host (tests and tools; training reads it with
/// the step's other results, see [`super::readout`]).
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    global_norm_sq(model, grads).map_or(0.0, |t| f64::from(t.into_scalar::<f32>()).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Pair {
        a: Param<Tensor<1>>,
        b: Param<Tensor<2>>,
    }

    fn setup(a: [f32; 2], b: [f32; 2]) -> (Pair, GradientsParams) {
        let device = Device::flex();
        let pair = Pair {
            a: Param::from_tensor(Tensor::zeros([2], &device)),
            b: Param::from_tensor(Tensor::zeros([1, 2], &device)),
        };
        let mut grads = GradientsParams::new();
        grads.register(pair.a.id, Tensor::<1>::from_data(TensorData::new(a.to_vec(), [2]), &device));
        grads.register(pair.b.id, Tensor::<2>::from_data(TensorData::new(b.to_vec(), [1, 2]), &device));
        (pair, grads)
    }

    fn values(pair: &Pair, grads: &GradientsParams) -> (Vec<f32>, Vec<f32>) {
        let a = grads.get::<1>(pair.a.id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let b = grads.get::<2>(pair.b.id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        (a, b)
    }

    fn norm(squared: Option<Tensor<1>>) -> f64 {
        f64::from(squared.unwrap().into_scalar::<f32>()).sqrt()
    }

    fn close(got: &[f32], want: &[f32]) -> bool {
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6)
    }

    #[test]
    fn gradients_over_the_threshold_are_scaled_to_it_together() {
        // ‖g‖ = sqrt(3² + 4²) = 5 across the two tensors; θ = 1 scales both by 1/5.
        let (pair, mut grads) = setup([3.0, 0.0], [0.0, 4.0]);
        let norm = norm(clip_global_norm(&pair, &mut grads, Some(1.0)));
        assert!((norm - 5.0).abs() < 1e-6, "{norm}");
        let (a, b) = values(&pair, &grads);
        assert!(close(&a, &[0.6, 0.0]) && close(&b, &[0.0, 0.8]), "{a:?} {b:?}");
        assert!((global_norm(&pair, &grads) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn gradients_within_the_threshold_are_untouched() {
        for theta in [Some(5.0), Some(10.0), None] {
            let (pair, mut grads) = setup([3.0, 0.0], [0.0, 4.0]);
            let norm = norm(clip_global_norm(&pair, &mut grads, theta));
            assert!((norm - 5.0).abs() < 1e-6);
            let (a, b) = values(&pair, &grads);
            // Untouched bit for bit, ‖g‖ = θ included.
            assert_eq!((a, b), (vec![3.0, 0.0], vec![0.0, 4.0]), "θ = {theta:?}");
        }
    }

    #[test]
    fn clipping_keeps_the_relative_sizes_of_different_parameters_gradients() {
        // ‖a‖ = 5 and ‖b‖ = 1; global norm sqrt(26). Clipping each tensor to θ = 2 on its own
        // would leave b alone and shrink a, making the ratio 2; the global rule keeps it at 5.
        let (pair, mut grads) = setup([3.0, 4.0], [1.0, 0.0]);
        let norm = norm(clip_global_norm(&pair, &mut grads, Some(2.0)));
        assert!((norm - 26f64.sqrt()).abs() < 1e-5);
        let (a, b) = values(&pair, &grads);
        let k = (2.0 / 26f64.sqrt()) as f32;
        assert!(close(&a, &[3.0 * k, 4.0 * k]) && close(&b, &[k, 0.0]), "{a:?} {b:?}");
        let ratio = a.iter().map(|x| x * x).sum::<f32>().sqrt() / b.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((ratio - 5.0).abs() < 1e-5, "{ratio}");
    }
}

//! The optimizer a job definition asks for, built from Burn's configs.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};

use crate::definition::OptimizerSpec;

/// Builds the optimizer `spec` describes (its learning rate is given at each step).
pub fn optimizer(spec: &OptimizerSpec) -> ModuleOptimizer {
    match *spec {
        OptimizerSpec::Sgd { momentum, weight_decay, .. } => SgdConfig::new()
            .with_momentum(
                (momentum > 0.0).then(|| MomentumConfig::new().with_momentum(momentum).with_dampening(0.0)),
            )
            .with_weight_decay((weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)))
            .init(),
        OptimizerSpec::Adam { beta1, beta2, epsilon, weight_decay, .. } => AdamConfig::new()
            .with_beta_1(beta1 as f32)
            .with_beta_2(beta2 as f32)
            .with_epsilon(epsilon as f32)
            .with_weight_decay((weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)))
            .init(),
    }
}

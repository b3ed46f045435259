//! `kiln parity`: trains LeNet-BN (or ResNet-18) on Fashion-MNIST from weights and a batch order that PyTorch
//! can reproduce exactly, so `bench/parity.py` can run the very same training and the two can be
//! compared loss by loss.
//!
//! Writes the initial weights (BatchNorm running statistics included, layer by layer in the
//! model's order, Linear weights as Burn stores them: `[in, out]`) to a JSON file, trains with SGD on
//! the training set in file order, and prints the loss of selected steps and the test accuracy
//! of each epoch in the same format as the Python side.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;

use crate::data::DatasetSpec;
use crate::definition::OptimizerSpec;
use crate::models::{ClassifierSpec, materialize};
use crate::train::checkpoint::export::each_float;
use crate::train::{fit, optim};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ParityArgs {
    /// Where to write the initial weights.
    #[arg(long, default_value = "/tmp/kiln-parity-init.json")]
    pub out: std::path::PathBuf,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Epochs over the training set.
    #[arg(long, default_value_t = 2)]
    pub epochs: u32,
    /// Learning rate (the book's LeNet-BN: 1.0).
    #[arg(long, default_value_t = 1.0)]
    pub lr: f64,
    /// Examples per step.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// `lenet_bn` or `resnet18` (at 28x28, to stay CPU-sized).
    #[arg(long, default_value = "lenet_bn")]
    pub model: String,
    /// Train on the first N images only.
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Directory searched for Fashion-MNIST before the system copy.
    #[arg(long, default_value = "./kiln-data/datasets")]
    pub datasets_dir: std::path::PathBuf,
}

/// Runs the training and prints what `bench/parity.py` prints.
pub fn run(args: &ParityArgs) -> Result<(), String> {
    let spec = match args.model.as_str() {
        "lenet_bn" => ClassifierSpec::LenetBn { batch_norm: true },
        "resnet18" => ClassifierSpec::resnet18(),
        other => return Err(format!("unknown model {other}: lenet_bn or resnet18")),
    };
    let data = DatasetSpec::FashionMnist
        .load(&args.datasets_dir, args.limit_train, None, None)
        .map_err(|e| e.to_string())?;
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    device.seed(args.seed);
    let mut model = spec.init(data.train.input_shape(), 10, &device);
    materialize(&model);
    // Every float tensor, in the order the model visits them: what bench/parity.py reads.
    let mut dump = Vec::new();
    each_float(&model.valid(), |_, data| {
        let values: Vec<f32> = data.iter::<f32>().collect();
        dump.push(format!("{{\"shape\":{:?},\"data\":{:?}}}", data.shape().to_vec(), values));
    });
    std::fs::write(&args.out, format!("[{}]", dump.join(",")))
        .map_err(|e| format!("{}: {e}", args.out.display()))?;

    let mut optim = optim::optimizer(&OptimizerSpec::Sgd { lr: args.lr, momentum: 0.0, weight_decay: 0.0 });
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let order: Vec<usize> = (0..data.train.len()).collect();
    let mut step = 0usize;
    for epoch in 1..=args.epochs {
        for chunk in order.chunks(args.batch) {
            let (x, y) = fit::batch(&data.train, chunk, &device);
            let (next, result) = fit::step(model, &mut optim, &loss_fn, args.lr, None, x, y);
            model = next;
            let loss = result.read().loss;
            if step < 5 || step % 100 == 0 {
                println!("step {step} loss {loss:.6}");
            }
            step += 1;
        }
        let (_, accuracy) = fit::evaluate(&model.valid(), &data.test, 1000, &plain, &|| false)
            .unwrap_or_else(|_| unreachable!("nothing stops a parity run"));
        println!("epoch {epoch} test_accuracy {accuracy:.4}");
    }
    Ok(())
}

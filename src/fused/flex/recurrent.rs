//! The recurrent layers' fused operations on flex: a whole RNN, GRU or LSTM layer over a
//! sequence, one kernel of [`kiln_kernels::sequence`] forward and one backward, recorded for
//! autodiff. The forward keeps the layer's states and activated gates, so the backward computes
//! no `exp` again.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use kiln_kernels::sequence::{self, Cell};

use super::{register, tensor, values};

/// A layer's inputs, in the order of the operation's arguments: the input's products, the
/// hidden weights, the bias (and the GRU's hidden bias), the first hidden state (and the LSTM's
/// first cell state).
pub(super) struct LayerInputs<'a> {
    pub(super) cell: Cell,
    pub(super) tensors: Vec<&'a FlexTensor>,
}

/// What a layer's backward needs: the shape, the weights and first state (shared with the
/// inputs, not copied) and the forward's results.
#[derive(Debug)]
pub(super) struct LayerRun {
    cell: Cell,
    shape: [usize; 3],
    u: FlexTensor,
    h0: FlexTensor,
    forward: sequence::Forward,
}

impl LayerInputs<'_> {
    /// Runs the layer: its output tensor and what its backward needs.
    pub(super) fn run(&self) -> (FlexTensor, LayerRun) {
        let [steps, batch, width] = self.tensors[0].shape().dims();
        let hidden = width / self.cell.gates();
        let values: Vec<_> = self.tensors.iter().map(|t| values(t)).collect();
        let (hidden_bias, h0, c0): (&[f32], &[f32], &[f32]) = match self.cell {
            Cell::Rnn => (&[], &values[3], &[]),
            Cell::Gru => (&values[3], &values[4], &[]),
            Cell::Lstm => (&[], &values[3], &values[4]),
        };
        let layer = sequence::Layer {
            cell: self.cell,
            steps,
            batch,
            hidden,
            u: &values[1],
            bias: &values[2],
            hidden_bias,
        };
        let forward = sequence::forward(&layer, &values[0], h0, c0);
        let n = batch * hidden;
        let output = match self.cell {
            Cell::Lstm => {
                let mut out = forward.outputs.clone();
                out.extend_from_slice(&forward.cells[steps * n..]);
                tensor(out, [steps + 1, batch, hidden])
            }
            _ => tensor(forward.outputs.clone(), [steps, batch, hidden]),
        };
        let h0 = if self.cell == Cell::Gru { self.tensors[4] } else { self.tensors[3] };
        let run = LayerRun {
            cell: self.cell,
            shape: [steps, batch, hidden],
            u: self.tensors[1].clone(),
            h0: h0.clone(),
            forward,
        };
        (output, run)
    }
}

impl LayerRun {
    /// The gradients of the layer's inputs, in their order, from the output's.
    fn backward(&self, grad: &FlexTensor) -> Vec<FlexTensor> {
        let [steps, batch, hidden] = self.shape;
        let width = self.cell.gates() * hidden;
        let n = batch * hidden;
        let grad = values(grad);
        let (d_outputs, d_c_last) = grad.split_at(steps * n);
        let u = values(&self.u);
        let layer =
            sequence::Layer { cell: self.cell, steps, batch, hidden, u: &u, bias: &[], hidden_bias: &[] };
        let g = sequence::backward(&layer, &self.forward, &values(&self.h0), d_outputs, d_c_last);
        let mut grads =
            vec![tensor(g.xp, [steps, batch, width]), tensor(g.u, [hidden, width]), tensor(g.bias, [width])];
        if self.cell == Cell::Gru {
            grads.push(tensor(g.hidden_bias, [width]));
        }
        grads.push(tensor(g.h0, [batch, hidden]));
        if self.cell == Cell::Lstm {
            grads.push(tensor(g.c0, [batch, hidden]));
        }
        grads
    }
}

/// The backward of a recurrent layer with `N` inputs.
#[derive(Debug)]
struct LayerBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for LayerBackward<N> {
    type State = Arc<LayerRun>;

    fn backward(self, ops: Ops<Arc<LayerRun>, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let inputs = ops.state.backward(&grad);
        register(ops, grads, inputs.into_iter().map(Some));
    }
}

/// Runs a layer of `cell` on autodiff tensors, recording its backward.
pub(super) fn tracked_layer<C: CheckpointStrategy, const N: usize>(
    cell: Cell,
    inputs: [FloatTensor<Autodiff<Flex, C>>; N],
) -> FloatTensor<Autodiff<Flex, C>> {
    let kind =
        LayerBackward::<N>.prepare::<C>(inputs.each_ref().map(|t| t.node())).compute_bound().stateful();
    let (output, run) = LayerInputs { cell, tensors: inputs.iter().map(|t| t.primitive()).collect() }.run();
    match kind {
        OpsKind::Tracked(prep) => prep.finish(Arc::new(run), output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

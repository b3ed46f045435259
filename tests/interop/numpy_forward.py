"""A kiln classifier's forward pass in NumPy, from its safetensors export alone.

Reads the file kiln serves at GET /jobs/{id}/checkpoints/{cid}?format=safetensors: the weights
under PyTorch's names and, in the metadata, the layer list the model was built from
(`kiln.layers`). Runs the layers in evaluation mode (BatchNorm on its running statistics,
dropout off) over the images on stdin and prints the softmax probabilities, one row per image,
as JSON. No PyTorch: numpy and safetensors only. The test suite compares these rows with kiln's
own `POST /jobs/{id}/predict` (tests/suite/interop.rs).

Usage: python numpy_forward.py MODEL.safetensors < {"shape": [C, H, W], "images": [[...], ...]}
"""

import json
import math
import sys

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from safetensors import safe_open
from safetensors.numpy import load_file

EPS = 1e-5  # BatchNorm's epsilon, PyTorch's and Burn's default


def pad(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def conv2d(x, w, b, stride, padding):
    windows = sliding_window_view(pad(x, padding), w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    y = np.einsum("nchwij,ocij->nohw", windows, w, optimize=True)
    return y + b[None, :, None, None]


def pool(x, kernel, stride, padding, reduce):
    windows = sliding_window_view(pad(x, padding), (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return reduce(windows, axis=(4, 5))


def batch_norm(x, weights, name):
    mean, var = weights[f"{name}.running_mean"], weights[f"{name}.running_var"]
    gamma, beta = weights[f"{name}.weight"], weights[f"{name}.bias"]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = gamma / np.sqrt(var + EPS)
    return (x - mean.reshape(shape)) * scale.reshape(shape) + beta.reshape(shape)


def forward(x, layers, weights):
    for i, layer in enumerate(layers):
        (kind, settings), = layer.items()
        if kind == "conv2d":
            x = conv2d(x, weights[f"{i}.weight"], weights[f"{i}.bias"], settings.get("stride", 1), settings.get("padding", 0))
        elif kind == "batch_norm":
            x = batch_norm(x, weights, str(i))
        elif kind == "linear":
            x = x @ weights[f"{i}.weight"].T + weights[f"{i}.bias"]
        elif kind == "sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "tanh":
            x = np.tanh(x)
        elif kind == "gelu":
            x = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
        elif kind in ("avg_pool2d", "max_pool2d"):
            kernel = settings["kernel"]
            reduce = np.mean if kind == "avg_pool2d" else np.max
            x = pool(x, kernel, settings.get("stride") or kernel, settings.get("padding", 0), reduce)
        elif kind == "global_avg_pool":
            x = x.mean(axis=(2, 3), keepdims=True)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "dropout":
            pass
        else:
            sys.exit(f"numpy_forward.py: layer {i} is a {kind}, which this script does not run")
    return x


def main():
    path = sys.argv[1]
    weights = {k: v.astype(np.float64) for k, v in load_file(path).items()}
    with safe_open(path, "np") as f:
        layers = json.loads(f.metadata()["kiln.layers"])
    request = json.load(sys.stdin)
    x = np.asarray(request["images"], dtype=np.float64).reshape([-1] + request["shape"])
    logits = forward(x, layers, weights)
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    json.dump(p.tolist(), sys.stdout)


if __name__ == "__main__":
    main()

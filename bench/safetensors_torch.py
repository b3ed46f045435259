"""Loads a LeNet-BN checkpoint kiln exported as safetensors into the book's PyTorch network
(nn.Sequential, d2l §8.5) with load_state_dict(strict=True) and prints its evaluation-mode
accuracy on Fashion-MNIST's test set, to compare with the test accuracy kiln reported for the
same checkpoint. Needs torch and safetensors (a venv outside the repository).

usage: kiln checkpoints JOB --download DIR --format safetensors
       python bench/safetensors_torch.py DIR/JOB-checkpoint-N.safetensors
"""
import gzip
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

path = sys.argv[1]

def idx(name, offset):
    raw = gzip.open(f"/usr/share/datasets/fashion-mnist/{name}.gz").read()[offset:]
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)

net = nn.Sequential(
    nn.LazyConv2d(6, kernel_size=5), nn.LazyBatchNorm2d(), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
    nn.LazyConv2d(16, kernel_size=5), nn.LazyBatchNorm2d(), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Flatten(), nn.LazyLinear(120), nn.LazyBatchNorm1d(), nn.Sigmoid(),
    nn.LazyLinear(84), nn.LazyBatchNorm1d(), nn.Sigmoid(), nn.LazyLinear(10))
net(torch.zeros(2, 1, 28, 28))  # materialises the lazy layers
net.load_state_dict(load_file(path), strict=True)
net.eval()
with safe_open(path, "pt") as f:
    metadata = f.metadata()
X = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28).float() / 255
Y = idx("t10k-labels-idx1-ubyte", 8).long()
with torch.no_grad():
    accuracy = (net(X).argmax(1) == Y).float().mean().item()
print(f"job {metadata['kiln.job']} step {metadata['kiln.step']}: PyTorch test accuracy {accuracy:.4f}")

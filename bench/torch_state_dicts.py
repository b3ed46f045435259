"""PyTorch's `state_dict` names and shapes for the book's networks, written as nn.Sequential lists
the way kiln's presets write them (LeNet-BN as the book does; ResNet and DenseNet flat, with the
book's Residual, DenseBlock and transition_block classes), at the sizes of kiln's export test.
Writes tests/fixtures/torch-state-dicts.json, which that test (src/train/checkpoint/export/tests.rs) reads; run it
again only to change those sizes. Needs torch (a venv outside the repository).

usage: python bench/torch_state_dicts.py > tests/fixtures/torch-state-dicts.json
"""
import json

import torch
from torch import nn
from torch.nn import functional as F

class Residual(nn.Module):  # d2l §8.6
    def __init__(self, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()
    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3: X = self.conv3(X)
        return F.relu(Y + X)

def conv_block(num_channels):  # d2l §8.7
    return nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.LazyConv2d(num_channels, kernel_size=3, padding=1))

class DenseBlock(nn.Module):
    def __init__(self, num_convs, num_channels):
        super().__init__()
        self.net = nn.Sequential(*[conv_block(num_channels) for _ in range(num_convs)])
    def forward(self, X):
        for blk in self.net:
            X = torch.cat((X, blk(X)), dim=1)
        return X

def transition_block(num_channels):
    return nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.LazyConv2d(num_channels, kernel_size=1), nn.AvgPool2d(kernel_size=2, stride=2))

lenet = nn.Sequential(
    nn.LazyConv2d(6, kernel_size=5), nn.LazyBatchNorm2d(), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
    nn.LazyConv2d(16, kernel_size=5), nn.LazyBatchNorm2d(), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Flatten(), nn.LazyLinear(120), nn.LazyBatchNorm1d(), nn.Sigmoid(),
    nn.LazyLinear(84), nn.LazyBatchNorm1d(), nn.Sigmoid(), nn.LazyLinear(10))
stem = lambda c: [nn.LazyConv2d(c, kernel_size=7, stride=2, padding=3), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
# resnet widths [4, 8], blocks [2, 1]
resnet = nn.Sequential(*stem(4), Residual(4), Residual(4), Residual(8, use_1x1conv=True, strides=2),
    nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10))
# densenet growth 4, blocks [2, 2, 1], stem 8: 8 -> 16 -> 8 -> 16 -> 8 -> 12
densenet = nn.Sequential(*stem(8), DenseBlock(2, 4), transition_block(8), DenseBlock(2, 4), transition_block(8), DenseBlock(1, 4),
    nn.LazyBatchNorm2d(), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10))
out = {}
for name, net, side in [("lenet_bn", lenet, 28), ("resnet", resnet, 16), ("densenet", densenet, 16)]:
    net(torch.zeros(2, 1, side, side))  # materialises the lazy layers
    out[name] = {k: list(v.shape) for k, v in net.state_dict().items()}
print(json.dumps(out, indent=1))

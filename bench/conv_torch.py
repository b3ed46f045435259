"""PyTorch's convolutions alone, per layer, on the shapes kernels/examples/conv_bench.rs times
for kiln: every convolution of the book's ResNet-18 or DenseNet at 96x96, batch 32, each layer's
best of REPEATS, forward and backward (input and weight gradients, the input's only where it has
more than one channel, as in torch_ref.py), summed over a training step as often as the model
runs it. Two threads, as bench/cpu-vs-torch.sh runs PyTorch.

usage: PYTHON bench/conv_torch.py [resnet18|densenet] [REPEATS]
"""
import sys
import time

import torch
import torch.nn.functional as F


def conv(b, cin, side, cout, k, s):
    return (b, cin, side, cout, k, s, k // 2)


def resnet18(b):
    layers = [("7x7 s2 1->64 @96", conv(b, 1, 96, 64, 7, 2), 1), ("3x3 64->64 @24", conv(b, 64, 24, 64, 3, 1), 4)]
    for c, side in [(64, 24), (128, 12), (256, 6)]:
        layers += [
            (f"3x3 s2 {c}->{2 * c} @{side}", conv(b, c, side, 2 * c, 3, 2), 1),
            (f"1x1 s2 {c}->{2 * c} @{side}", conv(b, c, side, 2 * c, 1, 2), 1),
            (f"3x3 {2 * c}->{2 * c} @{side // 2}", conv(b, 2 * c, side // 2, 2 * c, 3, 1), 3),
        ]
    return layers


def densenet(b):
    layers = [("7x7 s2 1->64 @96", conv(b, 1, 96, 64, 7, 2), 1)]
    c, side = 64, 24
    for block in range(4):
        for _ in range(4):
            layers.append((f"3x3 {c}->32 @{side}", conv(b, c, side, 32, 3, 1), 1))
            c += 32
        if block < 3:
            layers.append((f"1x1 {c}->{c // 2} @{side}", conv(b, c, side, c // 2, 1, 1), 1))
            c, side = c // 2, side // 2
    return layers


def best(repeats, f):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    torch.set_num_threads(2)
    model = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    layers = {"resnet18": resnet18, "densenet": densenet}[model](32)
    print(f"{'layer':<22} {'fwd ms':>9} {'bwd ms':>9}")
    total_fwd = total_bwd = 0.0
    for name, (b, cin, side, cout, k, s, p), times in layers:
        x = torch.randn(b, cin, side, side, requires_grad=cin > 1)
        w = torch.randn(cout, cin, k, k, requires_grad=True)
        bias = torch.randn(cout, requires_grad=True)
        with torch.no_grad():
            fwd = best(repeats, lambda: F.conv2d(x, w, bias, s, p))
        dy = torch.randn_like(F.conv2d(x, w, bias, s, p))
        both = best(repeats, lambda: F.conv2d(x, w, bias, s, p).backward(dy))
        print(f"{name:<22} {fwd * 1e3:>9.2f} {(both - fwd) * 1e3:>9.2f}")
        total_fwd += fwd * times
        total_bwd += (both - fwd) * times
    print(f"per step: forward {total_fwd * 1e3:.1f} ms, backward {total_bwd * 1e3:.1f} ms")


if __name__ == "__main__":
    main()

"""PyTorch side of bench/book-accuracy.sh: the book's ResNet-18 or DenseNet trained on Fashion-MNIST
as the book's `train_ch6` does (Xavier-uniform weights of every Conv2d and Linear, PyTorch's default
biases, SGD, cross-entropy, a shuffled pass per epoch, BatchNorm in training mode for the steps and
in evaluation mode for the test set), the images resized as kiln resizes them (bilinear, corners
not aligned, no antialiasing). Prints one line per epoch: train loss and accuracy over the epoch's
steps (the model before each update, as kiln and the book count them), test accuracy, seconds.

usage: python bench/book_accuracy.py MODEL EPOCHS BATCH LR RESIZE [SEED]
  MODEL   resnet (the book's ResNet-18) or densenet
  RESIZE  side in pixels, 0 for the data's own 28
Reads Debian's dataset-fashion-mnist from /usr/share/datasets/fashion-mnist.
"""
import gzip
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F


def idx(name, offset):
    raw = gzip.open(f"/usr/share/datasets/fashion-mnist/{name}.gz").read()[offset:]
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


class Residual(nn.Module):  # d2l §8.6, convolutions with bias
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv3 = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else None
        self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.conv3(x) if self.conv3 is not None else x))


def stem():
    return [nn.Conv2d(1, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]


def resnet18():
    layers, cin = stem(), 64
    for i, cout in enumerate([64, 128, 256, 512]):
        layers += [Residual(cin, cout, 1 if i == 0 else 2), Residual(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10))


class DenseBlock(nn.Module):  # d2l §8.7
    def __init__(self, n, cin, growth):
        super().__init__()
        self.net = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(cin + i * growth), nn.ReLU(), nn.Conv2d(cin + i * growth, growth, 3, padding=1))
            for i in range(n))

    def forward(self, x):
        for blk in self.net:
            x = torch.cat((x, blk(x)), dim=1)
        return x


def densenet():
    layers, c, growth = stem(), 64, 32
    for i in range(4):
        layers.append(DenseBlock(4, c, growth))
        c += 4 * growth
        if i != 3:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1), nn.AvgPool2d(2, 2)]
            c //= 2
    return nn.Sequential(*layers, nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(c, 10))


def main():
    model, epochs, batch, lr, resize = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    torch.manual_seed(int(sys.argv[6]) if len(sys.argv) > 6 else 42)
    xtr = idx("train-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28).float() / 255
    ytr = idx("train-labels-idx1-ubyte", 8).long()
    xte = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28).float() / 255
    yte = idx("t10k-labels-idx1-ubyte", 8).long()

    def prepare(x):
        return F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False) if resize else x

    net = {"resnet": resnet18, "densenet": densenet}[model]()
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
    print(f"model={model} parameters={sum(p.numel() for p in net.parameters())} threads={torch.get_num_threads()}",
          flush=True)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, epochs + 1):
        started, net = time.time(), net.train()
        loss_sum, right, seen = 0.0, 0, 0
        for rows in torch.randperm(len(xtr)).split(batch):
            x, y = prepare(xtr[rows]), ytr[rows]
            logits = net(x)
            loss = loss_fn(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(rows)
            right += (logits.argmax(1) == y).sum().item()
            seen += len(rows)
        net.eval()
        with torch.no_grad():
            test_right = sum((net(prepare(xte[i:i + batch])).argmax(1) == yte[i:i + batch]).sum().item()
                             for i in range(0, len(xte), batch))
        print(f"epoch={epoch} train_loss={loss_sum / seen:.4f} train_acc={right / seen:.4f} "
              f"test_acc={test_right / len(xte):.4f} seconds={time.time() - started:.0f}", flush=True)


if __name__ == "__main__":
    main()

"""PyTorch side of `kiln parity`: the same LeNet-BN, the same initial weights (read from the
JSON file kiln wrote), the same batches in the same order, the same SGD. Prints what kiln prints.

usage: python bench/parity.py [init.json] [epochs] [lr] [batch] [lenet_bn|resnet18] [limit_train]
"""
import gzip, json, os, sys
import torch
from torch import nn
from torch.nn import functional as F

path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/kiln-parity-init.json"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
lr = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 256
model = sys.argv[5] if len(sys.argv) > 5 else "lenet_bn"
limit = int(sys.argv[6]) if len(sys.argv) > 6 else None

def idx(name, offset):
    raw = gzip.open(f"/usr/share/datasets/fashion-mnist/{name}.gz").read()[offset:]
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)

Xtr = idx("train-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28).float() / 255
Ytr = idx("train-labels-idx1-ubyte", 8).long()
Xtr, Ytr = Xtr[:limit], Ytr[:limit]
Xte = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28).float() / 255
Yte = idx("t10k-labels-idx1-ubyte", 8).long()

tensors = iter(json.load(open(path)))
def take():
    t = next(tensors)
    return torch.tensor(t["data"]).reshape(t["shape"])
def load_conv(m):
    m.weight.copy_(take()); m.bias.copy_(take())
def load_bn(m):
    m.weight.copy_(take()); m.bias.copy_(take()); m.running_mean.copy_(take()); m.running_var.copy_(take())
def load_linear(m):  # Burn stores Linear weights as [in, out]
    m.weight.copy_(take().T); m.bias.copy_(take())

if model == "lenet_bn":
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Flatten(), nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(), nn.Linear(84, 10))
    order = list(net)
else:  # the shared reference's ResNet-18, loaded in kiln's field order
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
    import torch_ref
    net = torch_ref.resnet18()
    order = []
    for m in net:
        if isinstance(m, torch_ref.Residual):
            order += [m.c1, m.b1, m.c2, m.b2] + ([m.c3] if m.c3 is not None else [])
        else:
            order.append(m)
with torch.no_grad():
    for m in order:
        if isinstance(m, nn.Conv2d):
            load_conv(m)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            load_bn(m)
        elif isinstance(m, nn.Linear):
            load_linear(m)
assert next(tensors, None) is None, "every tensor kiln wrote was loaded"

opt = torch.optim.SGD(net.parameters(), lr=lr)
step = 0
for epoch in range(1, epochs + 1):
    net.train()
    for i in range(0, len(Xtr), batch):
        opt.zero_grad()
        loss = F.cross_entropy(net(Xtr[i:i + batch]), Ytr[i:i + batch])
        loss.backward()
        opt.step()
        if step < 5 or step % 100 == 0:
            print(f"step {step} loss {loss.item():.6f}")
        step += 1
    net.eval()
    with torch.no_grad():
        accuracy = (net(Xte).argmax(1) == Yte).float().mean().item()
    print(f"epoch {epoch} test_accuracy {accuracy:.4f}")

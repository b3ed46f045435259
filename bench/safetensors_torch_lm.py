"""Loads a GRU or LSTM language model kiln exported as safetensors into the book's concise
PyTorch model (d2l 0.17 §8.6 `RNNModel`: an optional nn.Embedding, one nn.GRU/nn.LSTM of
`layers` layers, nn.Linear) with load_state_dict(strict=True), continues a prefix greedily as
the book's `predict_ch8` does, and prints the text, to compare with what kiln's
`POST /jobs/{id}/generate` answers for the same checkpoint, prefix and length (temperature 0).
Needs torch and safetensors (a venv outside the repository).

usage: kiln checkpoints JOB --download DIR --format safetensors
       python bench/safetensors_torch_lm.py DIR/JOB-checkpoint-N.safetensors "time traveller " 50
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

path, prefix, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
with safe_open(path, "pt") as f:
    metadata = f.metadata()
spec = json.loads(metadata["kiln.definition"])
vocab = json.loads(metadata["kiln.vocab"])
model_spec = spec["model"]
index = {token: i for i, token in enumerate(vocab)}
unk = index.get("<unk>", 0)


class RNNModel(nn.Module):
    """The book's concise RNN language model, with an optional embedding."""

    def __init__(self, cell, vocab_size, hidden, layers, embedding):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding) if embedding else None
        inputs = embedding or vocab_size
        self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(inputs, hidden, layers)
        self.linear = nn.Linear(hidden, vocab_size)

    def forward(self, tokens, state):  # tokens: [steps, batch]
        x = self.embedding(tokens) if self.embedding else F.one_hot(tokens, self.vocab_size).float()
        y, state = self.rnn(x, state)
        return self.linear(y.reshape(-1, y.shape[-1])), state


net = RNNModel(model_spec["cell"], len(vocab), model_spec["hidden"], model_spec["layers"], model_spec.get("embedding"))
net.load_state_dict(load_file(path), strict=True)
net.eval()

# The prefix as kiln reads it (the d2l normalisation: runs of non-letters become one space, lower
# case), one character a token.
if spec["data"].get("normalize", "d2l") == "d2l":
    import re
    prefix = re.sub("[^A-Za-z]+", " ", prefix).lower()
tokens = [index.get(c, unk) for c in prefix]
state = None
with torch.no_grad():
    out = list(tokens)
    for t in tokens[:-1]:
        _, state = net(torch.tensor([[t]]), state)
    for _ in range(steps):
        logits, state = net(torch.tensor([[out[-1]]]), state)
        out.append(int(logits.argmax(1)))
print(json.dumps({"prompt": prefix, "text": "".join(vocab[t] for t in out[len(tokens):])}))

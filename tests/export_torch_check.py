#!/usr/bin/python3
"""Loads an `mnist-mlp export` safetensors file into PyTorch nn.Linear layers
and prints the softmax probabilities for one 28x28 image (raw uint8 bytes).

Usage: export_torch_check.py MODEL.safetensors PIXELS.bin
The safetensors header is parsed here by hand (the `safetensors` package is
not a Debian package), so this also checks the format from a second reader.
"""
import json
import struct
import sys

import torch
from torch import nn


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", t
        begin, end = t["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32).reshape(t["shape"])
    return tensors, header.get("__metadata__", {})


class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x


def main():
    tensors, meta = load_safetensors(sys.argv[1])
    sizes = [int(s) for s in meta["layers"].split("-")]
    model = MLP(sizes)
    model.load_state_dict(tensors, strict=True)  # names and shapes must match nn.Linear's
    with open(sys.argv[2], "rb") as f:
        pixels = torch.tensor(list(f.read()), dtype=torch.float32)
    with torch.no_grad():
        probs = torch.softmax(model(pixels.unsqueeze(0) / 255.0).double(), dim=1)[0]
    print(json.dumps(probs.tolist()))


if __name__ == "__main__":
    main()

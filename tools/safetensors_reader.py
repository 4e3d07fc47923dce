#!/usr/bin/python3
"""A small safetensors reader for `mnist-mlp export` files, for machines
without the `safetensors` package (Debian has no python3-safetensors).

As a module (from the repository root, or with tools/ on sys.path):

    import sys; sys.path.insert(0, "tools")
    from safetensors_reader import load_file      # like safetensors.torch.load_file
    model.load_state_dict(load_file("model.safetensors"))

  load_file(path)  -> {name: torch.Tensor}   (needs torch: python3-torch)
  read_header(path) -> (header dict, data offset)   (standard library only)
  metadata(path)   -> the "__metadata__" strings, e.g. {"layers": "784-500-500-500-10"}

As a command:

  tools/safetensors_reader.py MODEL.safetensors               names, dtypes, shapes
  tools/safetensors_reader.py MODEL.safetensors PIXELS.bin    loads the model into
      PyTorch nn.Linear layers and prints the softmax probabilities (JSON) for one
      28x28 image of raw uint8 bytes (pixels / 255, or 0/1 if exported --binarize)

Only F32 tensors are read (all that `mnist-mlp export` writes); anything else
is refused with a message naming the tensor.
"""
import json
import struct
import sys

MAX_HEADER = 100 << 20  # the format's own limit on the JSON header


class FormatError(ValueError):
    pass


def read_header(path):
    """The JSON header and the byte offset where the tensor data starts."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise FormatError("%s: too short for a safetensors file" % path)
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise FormatError("%s: header length %d is implausible (not safetensors?)" % (path, n))
        raw = f.read(n)
    if len(raw) != n:
        raise FormatError("%s: truncated header (%d of %d bytes)" % (path, len(raw), n))
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise FormatError("%s: header is not JSON (%s)" % (path, e))
    return header, 8 + n


def metadata(path):
    return read_header(path)[0].get("__metadata__", {})


def load_file(path, device="cpu"):
    import torch  # only here: read_header and metadata work without it

    header, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t.get("dtype") != "F32":
            raise FormatError("%s: tensor %s has dtype %s; only F32 is read" % (path, name, t.get("dtype")))
        begin, end = t["data_offsets"]
        count = 1
        for d in t["shape"]:
            count *= d
        if not (0 <= begin <= end <= len(data)) or end - begin != 4 * count:
            raise FormatError("%s: tensor %s: offsets %d..%d do not hold shape %s" %
                              (path, name, begin, end, t["shape"]))
        # bytearray: frombuffer wants a writable buffer. The data is little-endian,
        # as every host PyTorch runs on here.
        x = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32)
        tensors[name] = x.reshape(t["shape"]).to(device)
    return tensors


def _mlp(sizes):
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

        def forward(self, x):
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i + 1 < len(self.layers):
                    x = torch.relu(x)
            return x

    return MLP()


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        if len(argv) == 2:
            header, _ = read_header(argv[1])
            for name, t in header.items():
                if name != "__metadata__":
                    print("%s %s %s" % (name, t.get("dtype"), t.get("shape")))
            for k, v in header.get("__metadata__", {}).items():
                print("metadata %s = %s" % (k, v))
            return 0
        import torch

        meta = metadata(argv[1])
        model = _mlp([int(s) for s in meta["layers"].split("-")])
        model.load_state_dict(load_file(argv[1]), strict=True)  # names and shapes as nn.Linear's
        with open(argv[2], "rb") as f:
            pixels = torch.tensor(list(f.read()), dtype=torch.float32)
        x = (pixels > 127).float() if "pixel > 127" in meta.get("input", "") else pixels / 255.0
        with torch.no_grad():
            probs = torch.softmax(model(x.unsqueeze(0)).double(), dim=1)[0]
        print(json.dumps(probs.tolist()))
        return 0
    except (OSError, FormatError, KeyError) as e:
        print("safetensors_reader: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""tools/safetensors_reader.py as users import it (run by CTest): a file
written here byte by byte in the safetensors layout reads back with the right
names, shapes and values; malformed files are refused with a message. The
torch part is skipped where python3-torch is not installed (test_export.cpp
checks a real `mnist-mlp export` file against our predictions)."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import safetensors_reader as st  # noqa: E402


def write_file(path, tensors, meta):
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    header["__metadata__"] = meta
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)


class Reader(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "m.safetensors")
        write_file(self.path, {"layers.0.weight": ([2, 3], [1, 2, 3, 4, 5, 6.5]),
                               "layers.0.bias": ([2], [-1, 0.25])}, {"layers": "3-2"})

    def test_header_and_metadata_without_torch(self):
        header, start = st.read_header(self.path)
        self.assertEqual(header["layers.0.weight"]["shape"], [2, 3])
        self.assertEqual(st.metadata(self.path), {"layers": "3-2"})
        self.assertEqual(start, os.path.getsize(self.path) - 8 * 4)

    def test_refuses_a_truncated_or_foreign_file(self):
        bad = os.path.join(self.dir, "bad")
        with open(bad, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
        with self.assertRaises(st.FormatError):
            st.read_header(bad)
        with open(bad, "wb") as f:
            f.write(b"<html>404 not found</html>")
        with self.assertRaisesRegex(st.FormatError, "implausible"):
            st.read_header(bad)

    def test_command_lists_the_tensors(self):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "safetensors_reader.py"), self.path],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("layers.0.weight F32 [2, 3]", r.stdout)
        self.assertIn("metadata layers = 3-2", r.stdout)

    def test_load_file_gives_torch_tensors(self):
        try:
            import torch  # noqa: F401
        except ImportError:
            self.skipTest("python3-torch is not installed (tools/setup --peers adds it)")
        t = st.load_file(self.path)
        self.assertEqual(sorted(t), ["layers.0.bias", "layers.0.weight"])
        self.assertEqual(tuple(t["layers.0.weight"].shape), (2, 3))
        self.assertEqual(t["layers.0.weight"][1, 2].item(), 6.5)
        self.assertEqual(t["layers.0.bias"].tolist(), [-1.0, 0.25])
        bad = os.path.join(self.dir, "short.safetensors")
        write_file(bad, {"w": ([3], [1, 2])}, {})
        with self.assertRaisesRegex(st.FormatError, "do not hold shape"):
            st.load_file(bad)


if __name__ == "__main__":
    unittest.main()

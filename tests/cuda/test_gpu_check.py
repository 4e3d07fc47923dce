#!/usr/bin/env python3
"""tools/gpu-check end to end on this machine (run by CTest in CUDA builds).

    test_gpu_check.py MNIST_MLP MLP_CUDA_TESTS

A bundle directory is made of links to the build's binaries ($MLP_BUNDLE), and
gpu-check runs only its tests stage (--skip everything else, so it takes
seconds). Without a usable device, the run must end with exit status 1 and say
why in the summary, gpu-results.json and the table; with one, the GPU tests run.
Either way the eight promised files, and nothing else, must be in OUTDIR.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPU_CHECK = os.path.join(ROOT, "tools", "gpu-check")
FILES = {"summary.txt", "gpu-results.json", "gpu-results.md", "tests.log", "train.log",
         "bench.log", "sanitizer.log", "pytorch.json"}
MLP, TESTS = sys.argv[1], sys.argv[2]


def run(args, env=None):
    return subprocess.run([GPU_CHECK] + args, capture_output=True, text=True, timeout=600,
                          env=env)


class GpuCheck(unittest.TestCase):
    def test_tests_stage_and_report(self):
        bundle = tempfile.mkdtemp(prefix="gpu-check-bundle-")
        os.makedirs(os.path.join(bundle, "bin"))
        os.symlink(os.path.abspath(MLP), os.path.join(bundle, "bin", "mnist-mlp"))
        os.symlink(os.path.abspath(TESTS), os.path.join(bundle, "bin", "mlp_cuda_tests"))
        with open(os.path.join(bundle, "MANIFEST"), "w") as fh:
            fh.write("mnist-mlp GPU bundle, made by test_gpu_check.py on now\ncommit:  test\n")
        out = tempfile.mkdtemp(prefix="gpu-check-out-")
        env = dict(os.environ, MLP_BUNDLE=bundle)
        p = run([out, "--skip", "train,bench,sanitizer,pytorch,extra,fused"], env)
        self.assertEqual(set(os.listdir(out)), FILES, p.stdout + p.stderr)
        with open(os.path.join(out, "gpu-results.json")) as fh:
            res = json.load(fh)
        self.assertEqual(p.returncode, 1, "sanitizer and accuracy did not run: never a PASS")
        self.assertFalse(res["pass"]["overall"])
        self.assertIn("mnist-mlp gpu-check: FAIL", p.stdout)
        info = subprocess.run([MLP, "info"], capture_output=True, text=True).stdout
        if "compute capability" not in info:
            self.assertTrue(res["no_gpu"], p.stdout)
            self.assertIn("no usable CUDA device: " + res["no_gpu"], p.stdout)
            self.assertIn("no_gpu: ", open(os.path.join(out, "summary.txt")).read())
            self.assertGreater(res["gpu_tests"]["skipped"], 0)
        self.assertGreater(res["gpu_tests"]["passed"], 0, "the CPU-only tests run everywhere")
        self.assertEqual(res["gpu_tests"]["failed"], 0, res["gpu_tests"]["failed_names"])
        self.assertEqual(res["commit"], "test")

    def test_bad_arguments_exit_2(self):
        out = tempfile.mkdtemp(prefix="gpu-check-args-")
        for args in ([], ["--epochs", "3"], [out, "--epochs", "x"], [out, "--frobnicate"]):
            p = run(args)
            self.assertEqual(p.returncode, 2, (args, p.stdout, p.stderr))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])

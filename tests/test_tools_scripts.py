#!/usr/bin/env python3
"""tools/test and tools/fetch-data, run for real with stand-ins for what they
call (run by CTest; no network, no build).

- tools/test in a copied checkout whose build/ was configured elsewhere must
  configure a fresh build/ instead of running the old build's binaries.
- tools/fetch-data given files with a wrong checksum must name the file, exit
  non-zero, and leave no partial download (.part) and no replaced file behind.
"""
import gzip
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


class ToolsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.checkout = os.path.join(self.tmp, "copy")
        os.makedirs(os.path.join(self.checkout, "tools"))
        shutil.copy(os.path.join(ROOT, "tools", "test"), os.path.join(self.checkout, "tools"))
        os.makedirs(os.path.join(self.checkout, "data", "mnist"))
        open(os.path.join(self.checkout, "data", "mnist", "train-images-idx3-ubyte"), "w").close()
        # cmake and ctest stand-ins that log their arguments.
        self.bin = os.path.join(self.tmp, "bin")
        os.makedirs(self.bin)
        self.log = os.path.join(self.tmp, "calls.log")
        for tool in ("cmake", "ctest"):
            write_exe(os.path.join(self.bin, tool),
                      '#!/bin/sh\necho "%s $*" >> "%s"\n'
                      'if [ "$1" = -S ]; then mkdir -p "$4"; touch "$4/build.ninja"; fi\n'
                      % (tool, self.log))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_test_tool(self):
        env = dict(os.environ, PATH=self.bin + os.pathsep + os.environ["PATH"])
        return subprocess.run([os.path.join(self.checkout, "tools", "test")], env=env,
                              capture_output=True, text=True, timeout=60)

    def make_build(self, home):
        build = os.path.join(self.checkout, "build")
        os.makedirs(build)
        open(os.path.join(build, "build.ninja"), "w").close()
        with open(os.path.join(build, "CMakeCache.txt"), "w") as f:
            f.write("CMAKE_HOME_DIRECTORY:INTERNAL=%s\n" % home)
        open(os.path.join(build, "old-binary"), "w").close()

    def calls(self):
        with open(self.log) as f:
            return f.read()

    def test_copied_checkout_gets_a_fresh_build(self):
        self.make_build("/somewhere/else/mnist-mlp")
        r = self.run_test_tool()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configured for /somewhere/else/mnist-mlp", r.stderr)
        self.assertIn("cmake -S . -B build", self.calls())
        self.assertFalse(os.path.exists(os.path.join(self.checkout, "build", "old-binary")))

    def test_own_build_is_reused(self):
        self.make_build(self.checkout)
        r = self.run_test_tool()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("cmake -S", self.calls())
        self.assertIn("cmake --build build", self.calls())
        self.assertTrue(os.path.exists(os.path.join(self.checkout, "build", "old-binary")))


class FetchDataChecksum(unittest.TestCase):
    def test_names_the_file_and_removes_partial_downloads(self):
        tmp = tempfile.mkdtemp()
        try:
            mirror = os.path.join(tmp, "mirror")
            os.makedirs(mirror)
            for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
                with gzip.open(os.path.join(mirror, name + ".gz"), "wb") as f:
                    f.write(b"not MNIST " + name.encode())
            dest = os.path.join(tmp, "data")
            os.makedirs(os.path.join(dest, "mnist"))
            keep = os.path.join(dest, "mnist", "train-labels-idx1-ubyte")
            with open(keep, "w") as f:
                f.write("an older copy")
            env = dict(os.environ, FETCH_DATA_NO_NPM="1", MNIST_MIRROR="file://" + mirror)
            r = subprocess.run([os.path.join(ROOT, "tools", "fetch-data"), dest], env=env,
                               capture_output=True, text=True, timeout=120)
            if "neither npm nor curl nor wget" in r.stderr:
                self.skipTest("no curl or wget")
            self.assertNotEqual(r.returncode, 0, r.stderr)
            self.assertIn("train-images-idx3-ubyte (from file://", r.stderr)
            self.assertIn("SHA-256", r.stderr)
            left = os.listdir(os.path.join(dest, "mnist"))
            self.assertEqual([n for n in left if n.endswith(".part")], [], left)
            with open(keep) as f:
                self.assertEqual(f.read(), "an older copy")
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()

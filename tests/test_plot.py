#!/usr/bin/env python3
"""tools/plot on logs shaped like `train --log-json` and `bench --json` output
(run by CTest; skipped where /usr/bin/python3 has no matplotlib): per-interval
curves are drawn, the lr gets its own axis only when it was scheduled, the
bench sweep plots one series per device, and a bad line is named."""
import json
import os
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLOT = os.path.join(ROOT, "tools", "plot")


def has_matplotlib():
    return subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"],
                          capture_output=True).returncode == 0


def training_log(schedule):
    lines = [{"event": "start", "device": "cpu", "init": "he", "batch_size": 100,
              "steps_per_epoch": 6, "lr": 0.001, "lr_schedule": schedule, "lr_warmup_steps": 0}]
    for e in (1, 2, 3):
        for s in (2, 4, 6):
            t = (e - 1) * 6 + s
            lr = 0.001 * (0.5 ** (e - 1) if schedule == "step" else 1)
            lines.append({"event": "interval", "epoch": e, "step": s, "global_step": t,
                          "loss": 1.0 / t, "train_accuracy": 0.5 + t / 40.0,
                          "samples_per_sec": 1000, "lr": lr})
        lines.append({"event": "epoch", "epoch": e, "loss": 0.5 / e, "train_accuracy": 0.9,
                      "test_loss": 0.3, "test_accuracy": 0.91, "lr": lr})
    return "".join(json.dumps(l) + "\n" for l in lines)


@unittest.skipUnless(has_matplotlib(), "matplotlib is not installed for /usr/bin/python3")
class Plot(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def run_plot(self, *files):
        out = os.path.join(self.dir, "out.png")
        r = subprocess.run([PLOT, "-o", out] + list(files), capture_output=True, text=True, timeout=120)
        return r, out

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assert_png(self, path):
        with open(path, "rb") as f:
            head = f.read(8)
        self.assertEqual(head[1:4], b"PNG")
        self.assertGreater(os.path.getsize(path), 5000)

    def test_scheduled_log_gets_intervals_and_an_lr_axis(self):
        r, out = self.run_plot(self.write("step.jsonl", training_log("step")))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 log, 9 intervals, lr on its own axis", r.stdout)
        self.assert_png(out)

    def test_constant_lr_gets_no_lr_axis(self):
        r, out = self.run_plot(self.write("const.jsonl", training_log("constant")),
                               self.write("step.jsonl", training_log("step")))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 logs, 18 intervals, lr on its own axis", r.stdout)
        r, out = self.run_plot(self.write("const.jsonl", training_log("constant")))
        self.assertIn("1 log, 9 intervals)", r.stdout)
        self.assertNotIn("lr", r.stdout.split("(")[1])

    def test_bench_sweep(self):
        doc = {"tool": "mnist-mlp", "peaks": {"cpu": {"gflops": 100.0}}, "results": [
            {"device": d, "batch_size": b, "samples_per_sec": b * k, "gflops": b / 10.0}
            for d, k in (("cpu", 10), ("cuda", 300)) for b in (100, 256, 512)]}
        r, out = self.run_plot(self.write("bench.json", json.dumps(doc)))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 bench series", r.stdout)
        self.assert_png(out)

    def test_a_bad_interval_line_is_named(self):
        r, _ = self.run_plot(self.write("bad.jsonl", training_log("step") +
                                        '{"event":"interval","epoch":1}\n'))
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.jsonl:14: interval event without 'step'", r.stderr)


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""The README documents every flag of every command (run by CTest).

For each subcommand, every option `mnist-mlp <command> --help` lists must
appear in the README's section for that command (from its
"### `mnist-mlp <command>`" heading to the next heading): the README is where
users read flags and defaults, and a section lost in an edit fails here.

Usage: test_readme.py PATH/TO/mnist-mlp
"""
import os
import re
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = None
COMMANDS = ("train", "info", "eval", "predict", "export", "bench")


def help_flags(command):
    out = subprocess.run([BINARY, command, "--help"], capture_output=True, text=True, check=True)
    flags = set()
    for line in out.stdout.splitlines():
        m = re.match(r"^\s+(?:-\w,)?(--[a-z0-9][a-z0-9-]*)", line)
        if m and m.group(1) != "--help":
            flags.add(m.group(1))
    return flags


def readme_section(text, command):
    start = text.find("### `mnist-mlp %s`" % command)
    if start < 0:
        return None
    nxt = re.search(r"^#{2,3} ", text[start + 4:], re.M)
    return text[start: start + 4 + nxt.start()] if nxt else text[start:]


class ReadmeFlags(unittest.TestCase):
    def test_every_flag_of_every_command_is_documented(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            text = f.read()
        for command in COMMANDS:
            with self.subTest(command=command):
                section = readme_section(text, command)
                self.assertIsNotNone(section, "README has no section for mnist-mlp %s" % command)
                flags = help_flags(command)
                if command != "info":
                    self.assertTrue(flags, "no flags parsed from mnist-mlp %s --help" % command)
                missing = sorted(
                    f for f in flags if not re.search(re.escape(f) + r"(?![a-z0-9-])", section))
                self.assertEqual(missing, [], "mnist-mlp %s: flags not in its README section"
                                 % command)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_readme.py PATH/TO/mnist-mlp")
    BINARY = sys.argv.pop(1)
    unittest.main()

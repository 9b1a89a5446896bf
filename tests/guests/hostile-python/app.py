"""A Python MOD that looks for what the broker must not give it: files,
folders, environment, arguments, stdin; and floods stdout and stderr.
Its probe reports what it found, as JSON in the detail."""

import json
import os
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types


def attempt(f):
    try:
        return repr(f())[:80]
    except BaseException as e:
        return "refused: " + type(e).__name__


class Lifecycle(exports.Lifecycle):
    def info(self):
        return types.ModeInfo(name="hostile-python", version="0.1.0", summary="looks for files and floods stdio")

    def probe(self):
        seen = {
            "passwd": attempt(lambda: open("/etc/passwd").read()),
            "root": attempt(lambda: os.listdir("/")),
            "cwd": attempt(lambda: os.listdir(".")),
            "write": attempt(lambda: open("/tmp/p2pb-hostile-python", "w").write("x")),
            "environ": attempt(lambda: dict(os.environ)),
            "argv": attempt(lambda: sys.argv),
            "stdin": attempt(lambda: sys.stdin.read()),
        }
        for i in range(1000):
            print(f"line {i}")
        sys.stdout.flush()
        sys.stderr.write("E" * 2_000_000 + "\n")
        sys.stderr.flush()
        return types.ProbeReport(None, None, None, json.dumps(seen)[:1024], b"")

    def map(self, request):
        raise Err(types.ModeError_Unsupported("no"))

    def renew(self, current, lifetime):
        raise Err(types.ModeError_Unsupported("no"))

    def unmap(self, current):
        return None

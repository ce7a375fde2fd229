#!/usr/bin/env python3
"""Writes the type stubs of the compiled core, python/tformer/_core/*.pyi, with pybind11-stubgen.

    python scripts/generate_stubs.py            # regenerate the committed stubs
    python scripts/generate_stubs.py --check    # exit 1, with a diff, when they are stale

The stubs describe the tformer._core that `import tformer` finds (the worktree's, with
PYTHONPATH=python, or the installed wheel's): run it after changing python/bindings/.
_core has submodules (ops, bench), so the stubs are a stub package next to the extension:
_core/__init__.pyi, _core/ops.pyi, _core/bench.pyi (Python imports the .so; type checkers
read the .pyi files). A few things pybind11 cannot spell are fixed up here (see FIXES) so
that the stubs pass `mypy --strict`.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUB_DIR = os.path.join(ROOT, "python", "tformer", "_core")

# (pattern, replacement) applied to every generated file, in order.
FIXES = [
    # TrainGraph is registered before Model, so its docstring names the C++ type.
    (r"\bmodel: \.\.\.", "model: Model"),
    # Bare containers (py::dict, py::list, py::tuple results) fail --strict's type-arg check.
    (r"-> dict:", "-> dict[str, typing.Any]:"),
    (r"-> list:", "-> list[typing.Any]:"),
    (r"-> tuple:", "-> tuple[typing.Any, ...]:"),
    (r"\*args\)", "*args: typing.Any)"),
    # The version changes with every release; its type is what a checker needs.
    (r"__version__: str = '[^']*'", "__version__: str"),
]


def generate(out_dir: str) -> dict[str, str]:
    """Runs pybind11-stubgen into out_dir; returns {file name: fixed-up text}."""
    cmd = [sys.executable, "-m", "pybind11_stubgen", "tformer._core", "-o", out_dir]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"pybind11-stubgen failed (pip install pybind11-stubgen; is tformer importable?):\n{run.stderr}")
    package = os.path.join(out_dir, "tformer", "_core")
    stubs = {}
    for name in sorted(os.listdir(package)):
        with open(os.path.join(package, name), encoding="utf-8") as f:
            text = f.read()
        for pattern, replacement in FIXES:
            text = re.sub(pattern, replacement, text)
        stubs[name] = text
    return stubs


def committed() -> dict[str, str]:
    """The stub files in python/tformer/_core/ now."""
    if not os.path.isdir(STUB_DIR):
        return {}
    stubs = {}
    for name in sorted(os.listdir(STUB_DIR)):
        if name.endswith(".pyi"):
            with open(os.path.join(STUB_DIR, name), encoding="utf-8") as f:
                stubs[name] = f.read()
    return stubs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed stubs; exit 1 with a diff if stale")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tformer-stubs-") as tmp:
        fresh = generate(tmp)
    if args.check:
        old = committed()
        diff = []
        for name in sorted(set(fresh) | set(old)):
            diff += difflib.unified_diff(old.get(name, "").splitlines(keepends=True),
                                         fresh.get(name, "").splitlines(keepends=True),
                                         f"python/tformer/_core/{name} (committed)", f"{name} (generated)")
        if diff:
            sys.stdout.writelines(diff)
            print("\nthe stubs of tformer._core are stale: run python scripts/generate_stubs.py and commit",
                  file=sys.stderr)
            return 1
        print(f"stubs of tformer._core are current ({len(fresh)} files)")
        return 0
    os.makedirs(STUB_DIR, exist_ok=True)
    for name in set(committed()) - set(fresh):
        os.remove(os.path.join(STUB_DIR, name))
    for name, text in fresh.items():
        with open(os.path.join(STUB_DIR, name), "w", encoding="utf-8") as f:
            f.write(text)
    print(f"wrote {len(fresh)} stub files to {os.path.relpath(STUB_DIR, ROOT)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

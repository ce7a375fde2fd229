"""The typed API: `mypy --strict` passes on examples/ (which call the public API), the stubs of
tformer._core are current, the package ships py.typed and the stubs, and the README's
generate options are the ones help(tformer.Transformer.generate) documents."""
import ast
import inspect
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import tformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.abspath(tformer.__file__))


def _run(args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_mypy_strict_on_examples_and_core_stubs():
    # A cache outside the tree keeps reruns at ~2 s (a cold run ~10-30 s); pyproject's
    # [tool.mypy] points it at python/ and the stubs there.
    cache = os.path.join(tempfile.gettempdir(), "tformer-mypy-cache")
    run = _run(["-m", "mypy", "--strict", "--cache-dir", cache, "examples", os.path.join("python", "tformer", "_core")])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success" in run.stdout


def test_mypy_strict_catches_a_wrong_call(tmp_path):
    # The check above can fail: a call with the wrong types into the public API is an error.
    bad = tmp_path / "bad.py"
    bad.write_text("import tformer\n\n\ndef f(model: tformer.Transformer) -> str:\n"
                   "    return model.generate([[1, 2]], beam_size='4')\n")
    cache = os.path.join(tempfile.gettempdir(), "tformer-mypy-cache")
    run = _run(["-m", "mypy", "--strict", "--cache-dir", cache, str(bad)])
    assert run.returncode == 1, run.stdout + run.stderr
    assert 'Argument "beam_size"' in run.stdout and "Incompatible return value" in run.stdout, run.stdout



def test_mypy_checks_the_package_bodies(tmp_path):
    # Every function body of the package type-checks under pyproject's [tool.mypy] for
    # tformer.* (check_untyped_defs, warn_unreachable), what CI runs; a cold cache, since a
    # warm one can hide errors (~10 s).
    run = _run(["-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "-p", "tformer"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found" in run.stdout, run.stdout


def test_mypy_package_config_reports_untyped_bodies_and_skipped_code(tmp_path):
    # The check above can fail: under the same configuration, a wrong unannotated body is an
    # error, and so is code that mypy would skip as unreachable after an isinstance check it
    # deems impossible (int vs numbers.Integral: use option_checks.is_integer instead).
    package = tmp_path / "python" / "tformer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import numbers\n\n\ndef untyped():\n    return 1 + 'a'\n\n\n"
        "def steps(value: int) -> int:\n    if not isinstance(value, numbers.Integral):\n"
        "        raise TypeError(value)\n    return value\n")
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file", os.path.join(ROOT, "pyproject.toml"),
                          "--cache-dir", str(tmp_path / "cache"), "-p", "tformer"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "__init__.py:5: error: Unsupported operand types" in run.stdout, run.stdout
    assert "__init__.py:11: error: Statement is unreachable" in run.stdout, run.stdout


def test_integer_and_real_checks_accept_what_the_isinstance_checks_did():
    # option_checks.is_integer / is_real replace inline isinstance checks (for mypy's sake):
    # Python and NumPy numbers pass, bools (NumPy's too), strings and None do not.
    from tformer.option_checks import is_integer, is_real

    assert all(is_integer(v) for v in (0, -3, 2**70, np.int8(1), np.uint64(7)))
    assert not any(is_integer(v) for v in (True, np.bool_(True), 2.0, np.float32(1), "1", None))
    assert all(is_real(v) for v in (0, 2.5, float("inf"), np.int32(1), np.float16(0.5)))
    assert not any(is_real(v) for v in (False, np.bool_(False), "1.0", None, 1j))

def test_typed_usage_example_runs():
    # The example mypy checks also runs: every call in it works as annotated.
    run = _run([os.path.join("examples", "typed_usage.py")], timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "first partial" in run.stdout and "validation loss" in run.stdout, run.stdout


def test_core_stubs_are_current():
    run = _run([os.path.join("scripts", "generate_stubs.py"), "--check"])
    assert run.returncode == 0, run.stdout + run.stderr


def test_package_ships_py_typed_and_core_stubs():
    # Run against the installed wheel in CI: scikit-build-core copies the package directory.
    for name in ("py.typed", os.path.join("_core", "__init__.pyi"), os.path.join("_core", "ops.pyi")):
        assert os.path.isfile(os.path.join(PACKAGE, name)), f"{name} is missing from {PACKAGE}"
    # The stub directory next to the extension does not shadow it at run time.
    assert tformer._core.__file__.endswith(".so"), tformer._core.__file__


def _readme_generate_options():
    """{name: default source text or None} from the README's "generate's options" comment."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# generate's options and defaults"))
    text = []
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        text.append(line[4:])
    text = " ".join(text).replace("and, defaulting to the model's (config.json, generation_config.json):", ",")
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, default = item.partition("=")
        assert re.fullmatch(r"[a-z_]+", name), f"README generate option {item!r} is not name or name=default"
        options[name] = default or None
    return options


def test_readme_generate_options_match_the_signature_and_docstring():
    options = _readme_generate_options()
    params = inspect.signature(tformer.Transformer.generate).parameters
    doc = inspect.getdoc(tformer.Transformer.generate)
    explicit = [name for name, p in params.items() if name not in ("self", "src_ids") and p.kind != p.VAR_KEYWORD]
    # Every explicit parameter is in the README, with the signature's default.
    assert [n for n in options if n in params] == explicit
    for name in explicit:
        assert ast.literal_eval(options[name]) == params[name].default, name
        assert f"    {name}:" in doc, f"{name} is not described in generate's docstring"
    # The rest go through **options: the docstring names each, with the README's default.
    for name, default in options.items():
        if name not in params:
            assert (f"{name}={default}" if default else name) in doc, (name, default)


def test_readme_generate_options_are_accepted(tiny_model):
    # Each option the README lists, given its documented default, decodes as the defaults do.
    options = _readme_generate_options()
    src = [[5, 6, 7, 1]]
    expected = tiny_model.generate(src, max_length=6)[0].tokens
    for name, default in options.items():
        if default is None or name == "max_length":
            continue
        got = tiny_model.generate(src, max_length=6, **{name: ast.literal_eval(default)})[0].tokens
        assert got == expected, name
    with pytest.raises(TypeError, match="unexpected option"):
        tiny_model.generate(src, beam_sizes=4)


def test_readme_generate_calls_use_documented_options():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    options = _readme_generate_options()
    calls = re.findall(r"\.(?:generate|generate_stream|submit|stream)\((.*?)\)\s*(?:#|$|:)", readme, re.S | re.M)
    used = {kw for call in calls for kw in re.findall(r"\b([a-z_]+)=", call)}
    assert used, "no generate call found in the README"
    assert used - {"deadline"} <= set(options), used - set(options)


@pytest.fixture(scope="module")
def tiny_model():
    cfg = tformer.TransformerConfig(src_vocab_size=16, tgt_vocab_size=16, d_model=8, encoder_layers=1,
                                    decoder_layers=1, encoder_heads=2, decoder_heads=2, encoder_ffn_dim=16,
                                    decoder_ffn_dim=16, pad_id=0, eos_id=1, bos_id=2)
    return tformer.Transformer(cfg, seed=0)

"""The shared layer ships python3.13 bytecode, so Lambda does not compile it at every cold start (issue 7).

Runs layers/shared/Makefile (what `sam build` runs) into a temporary directory; pip's cache makes it quick.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from local.template import ROOT

UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked


def _build(target: Path, **variables: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT / "layers" / "shared"), "build-SharedLayer"]
        + [f"{name}={value}" for name, value in variables.items()],
        env={**os.environ, "ARTIFACTS_DIR": str(target), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _magic(python: str) -> bytes:
    done = subprocess.run(
        [python, "-c", "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return bytes.fromhex(done.stdout)


def test_every_module_of_the_layer_has_unchecked_python313_bytecode(tmp_path: Path) -> None:
    output = _build(tmp_path)
    found = re.search(r"compiling the layer with (\S+)", output)
    if found is None:  # a machine without python3.13: the build says so and ships source only
        assert "no python3.13 on this machine" in output
        assert not list((tmp_path / "python").rglob("*.pyc"))
        return
    python313 = found.group(1)
    magic = _magic(python313)
    sources = sorted((tmp_path / "python").rglob("*.py"))
    assert any(path.parts[-2:] == ("calendar_connect", "connect_flow.py") for path in sources)
    missing, wrong = [], []
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not compiled.exists():
            missing.append(source)
            continue
        header = compiled.read_bytes()[:8]
        if header[:4] != magic or int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
            wrong.append(compiled)
    # compileall fails the build on a file that is not valid Python 3.13, so every module is compiled.
    assert not missing, missing[:5]
    assert not wrong, wrong[:5]
    others = [p for p in (tmp_path / "python").rglob("*.pyc") if ".cpython-313." not in p.name]
    assert not others, others[:5]  # nothing compiled for the build machine's own Python


def test_the_layer_builds_without_python313_and_ships_source_only(tmp_path: Path) -> None:
    output = _build(tmp_path, PYTHON313="")
    assert "no python3.13 on this machine" in output
    assert (tmp_path / "python" / "calendar_connect" / "connect_flow.py").exists()
    assert not list((tmp_path / "python").rglob("*.pyc"))
    # The runtime's boto3 and botocore run with their own libraries: none of them is shadowed by the layer.
    shipped = {entry.name.split("-")[0].removesuffix(".py") for entry in (tmp_path / "python").iterdir()}
    assert not shipped & {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "python_dateutil", "six"}
    # What the layer's own libraries need is there (Powertools uses jmespath itself).
    assert {"aws_lambda_powertools", "aws_xray_sdk", "jmespath", "wrapt", "httpx", "pydantic", "yaml"} <= shipped

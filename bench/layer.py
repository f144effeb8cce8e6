"""The shared layer's size as `sam build` makes it (layers/shared/Makefile), zipped and unzipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from local.template import ROOT

SAM_BUILD = ROOT / ".aws-sam" / "build" / "SharedLayer"
CACHE = ROOT / "bench" / "out" / "SharedLayer"  # git-ignored; reused by --quick


@dataclass
class LayerSize:
    source: str
    zipped: int = 0
    unzipped: int = 0
    packages: list[tuple[str, int]] = field(default_factory=list)
    sources: int = 0  # .py files
    compiled: int = 0  # of which ship python3.13 bytecode (layers/shared/Makefile, with a python3.13)

    @property
    def ships_bytecode(self) -> bool:
        return self.sources > 0 and self.compiled == self.sources


def _build(target: Path) -> None:
    """The same pip command as layers/shared/Makefile's build-SharedLayer, into `target`."""
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "ARTIFACTS_DIR": str(target), "PYTHON": sys.executable}
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT / "layers" / "shared"), "build-SharedLayer"],
        env=env,
        check=True,
        timeout=600,
    )


def _measure(root: Path, source: str) -> LayerSize:
    size = LayerSize(source)
    sizes: dict[str, int] = {}
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                if path.suffix == ".py":
                    size.sources += 1
                    size.compiled += (path.parent / "__pycache__" / f"{path.stem}.cpython-313.pyc").exists()
                if path.is_file():
                    archive.write(path, path.relative_to(root))
                    size.unzipped += path.stat().st_size
                    top = path.relative_to(root / "python").parts[0] if path.is_relative_to(root / "python") else ""
                    name = top.split("-")[0] if top.endswith(".dist-info") else top
                    sizes[name] = sizes.get(name, 0) + path.stat().st_size
        handle.seek(0, os.SEEK_END)
        size.zipped = handle.tell()
    size.packages = sorted(sizes.items(), key=lambda item: -item[1])
    return size


def measure_layer(build: bool) -> LayerSize | None:
    """`make build`'s output when there is one; else a build of our own (needs the package registry) unless not
    allowed to build, then the last one cached, or None."""
    if (SAM_BUILD / "python").is_dir():
        return _measure(SAM_BUILD, ".aws-sam/build/SharedLayer (make build)")
    if build:
        _build(CACHE)
    if (CACHE / "python").is_dir():
        return _measure(CACHE, "bench/out/SharedLayer (layers/shared/Makefile)" + ("" if build else ", cached"))
    return None

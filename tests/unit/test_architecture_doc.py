"""docs/architecture.md stays true: it names every module of the layer and every function, and draws one picture."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "shared" / "python" / "calendar_connect"
DOC = (ROOT / "docs" / "architecture.md").read_text()


def test_every_layer_module_has_its_place_in_the_architecture() -> None:
    modules = {p.stem for p in LAYER.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in LAYER.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    named = set(re.findall(r"`([a-z_]+)[`./]", DOC)) | set(re.findall(r"\b([a-z_]+)\[", DOC))
    assert sorted(modules - named) == []


def test_every_function_is_in_the_picture() -> None:
    template = (ROOT / "template.yaml").read_text()
    functions = set(re.findall(r"^  (\w+Function):\n    Type: AWS::Serverless::Function", template, re.M))
    picture = DOC.split("```mermaid", 1)[1].split("```", 1)[0]
    assert functions and all(name in picture for name in functions)


def test_the_doc_links_nothing_outside_the_repository() -> None:
    assert not re.search(r"\]\((?!#)(?![\w./-]+\.(md|json)\b)", DOC)
    assert "../shared" not in DOC

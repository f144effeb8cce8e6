"""The management API's OpenAPI document, generated from InitiateFunction's routes (Powertools).

python -m scripts.openapi            # rewrite docs/openapi.json
python -m scripts.openapi --check    # exit 1 when docs/openapi.json differs from the code
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from local.template import ROOT, functions, load_template

DOCUMENT = ROOT / "docs" / "openapi.json"


def generated() -> str:
    function = functions(load_template())["InitiateFunction"]
    module_file = function.handler.rpartition(".")[0]
    spec = importlib.util.spec_from_file_location("initiate_for_openapi", Path(function.code_dir) / f"{module_file}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return json.dumps(json.loads(module.app.get_openapi_json_schema()), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    document = generated()
    if "--check" in argv:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != document:
            print(f"{DOCUMENT.relative_to(ROOT)} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(document)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

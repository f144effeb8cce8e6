"""docs/openapi.json is the document the code generates: it cannot drift (regenerate with `make openapi`)."""

from __future__ import annotations

import json

from scripts.openapi import DOCUMENT, generated


def test_the_committed_openapi_document_matches_the_code() -> None:
    assert DOCUMENT.read_text() == generated(), "docs/openapi.json is out of date: run `make openapi`"


def test_every_route_documents_its_errors_and_the_key() -> None:
    document = json.loads(generated())
    assert document["security"] == [{"apiKey": []}]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert {"200", "400", "401", "500", "503"} <= set(operation["responses"]), f"{method} {path}"

"""The JSON nesting check runs on the raw text, before any parser: brackets inside strings do not count."""

from __future__ import annotations

import json

import pytest

from calendar_connect.request_limits import MAX_JSON_DEPTH, is_json, json_nesting_exceeds


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def test_the_limit_is_32_levels():
    assert MAX_JSON_DEPTH == 32
    assert not json_nesting_exceeds(nested(32))
    assert json_nesting_exceeds(nested(33))


@pytest.mark.parametrize(
    "value",
    [
        {"a": "[" * 100},
        {"a": "{" * 50 + '\\"' + "[" * 50},
        {"a": 'quote " and backslash \\ then [[[[' * 20},
        {"[" * 40: "]" * 40},
    ],
)
def test_brackets_inside_strings_do_not_count(value):
    assert not json_nesting_exceeds(json.dumps(value).encode())


def test_objects_and_arrays_count_alike():
    body = json.dumps(json.loads('{"a": [' * 17 + "1" + "]}" * 17)).encode()  # 34 levels
    assert json_nesting_exceeds(body)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("", True),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
    ],
)
def test_which_bodies_are_read_as_json(content_type, expected):
    assert is_json(content_type) is expected

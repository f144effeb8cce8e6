"""DynamoDB item conversion: the fast paths answer exactly what boto3's TypeSerializer/TypeDeserializer answer."""

from __future__ import annotations

from decimal import Decimal, Inexact

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from calendar_connect.dal import _from_item, _to_item, _values

VALUES = [
    "",
    "plain",
    "ünïcode ✓",
    True,
    False,
    0,
    -7,
    1795254166,
    10**37,
    -(10**37),
    Decimal("1.5"),
    b"\x00\x01binary",
    {"connectionId": "c-1", "nested": {"n": 3, "flag": True}},
    ["a", 1, False],
    {"a", "b"},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_are_written_as_type_serializer_writes_them(value):
    assert _to_item({"v": value}) == {"v": TypeSerializer().serialize(value)}
    assert _values(v=value) == {":v": TypeSerializer().serialize(value)}


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_read_back_as_type_deserializer_reads_them(value):
    attribute = TypeSerializer().serialize(value)
    expected = TypeDeserializer().deserialize(attribute)
    assert _from_item({"v": attribute}) == {"v": expected.value if isinstance(expected, Binary) else expected}


def test_none_attributes_are_left_out_and_numbers_beyond_dynamodb_are_refused():
    assert _to_item({"a": None, "b": "x"}) == {"b": {"S": "x"}}
    with pytest.raises(Inexact):  # boto3's own refusal, as before
        _to_item({"n": 10**40 + 1})

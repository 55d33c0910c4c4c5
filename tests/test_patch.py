"""The diff behind every webhook patch, checked against jsonpatch as the oracle."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.patch import diff, json_copy

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="ab/~", max_size=3)
)
keys = st.text(alphabet="ab/~", max_size=3)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=25
)


@settings(max_examples=600, deadline=None)
@given(original=documents, target=documents)
def test_applying_the_diff_yields_the_target(original: Any, target: Any) -> None:
    patch = diff(original, target)
    result = jsonpatch.apply_patch(copy.deepcopy(original), copy.deepcopy(patch))
    assert result == target and _types(result) == _types(target)


@settings(max_examples=200, deadline=None)
@given(document=documents)
def test_no_change_means_an_empty_patch(document: Any) -> None:
    assert diff(document, json_copy(document)) == []


def test_json_distinguishes_true_from_one() -> None:
    assert diff({"a": [1]}, {"a": [True]}) == [{"op": "replace", "path": "/a/0", "value": True}]


def test_appended_items_are_added_not_replaced() -> None:
    assert diff({"l": [1]}, {"l": [1, 2]}) == [{"op": "add", "path": "/l/-", "value": 2}]


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__

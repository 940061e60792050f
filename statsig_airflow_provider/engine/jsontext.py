"""Vectorised JSON text building on Arrow string arrays.

Serialising a day through Python dicts costs microseconds a row; building the JSON text with
Arrow's string kernels costs a fraction of that and never holds a Python object per row.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

_NEEDS_ESCAPE = r'["\\\x00-\x1f]'
_CONTROL_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def escape(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """JSON string escaping (without the quotes); a no-op pass when nothing needs escaping."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) and pc.any(pc.match_substring_regex(values, _NEEDS_ESCAPE)).as_py():
        values = pc.replace_substring(values, "\\", "\\\\")
        values = pc.replace_substring(values, '"', '\\"')
        if pc.any(pc.match_substring_regex(values, r"[\x00-\x1f]")).as_py():
            for code in range(0x20):
                char = chr(code)
                if pc.any(pc.match_substring(values, char)).as_py():
                    values = pc.replace_substring(values, char, _CONTROL_ESCAPES.get(code, f"\\u{code:04x}"))
    return values


def quote(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """JSON string literals for a string array; nulls stay null."""
    return pc.binary_join_element_wise('"', escape(values), '"', "")


def quote_literal(text: str) -> str:
    """A JSON string literal for one Python string (for constant keys)."""
    return json.dumps(text, ensure_ascii=False)


def concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation; the result is null where any part is null."""
    return pc.binary_join_element_wise(*parts, "")


def concat_present(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation in which null parts count as empty (never null itself)."""
    return pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="")


# Object members are built with their leading comma (`,"key":value`), so an object is the
# concatenation of its present members with the first comma cut: no per-member null handling.

def member(key: str, json_values: pa.Array | str) -> pa.Array | str:
    """`,"key":value` per row; null where the value is null."""
    if isinstance(json_values, str):
        return f",{quote_literal(key)}:{json_values}"
    return concat(f",{quote_literal(key)}:", json_values)


def string_member(key: str, values: pa.Array) -> pa.Array:
    """`,"key":"value"` for a string array, escaped, in one pass; null where the value is null."""
    return pc.binary_join_element_wise(f",{quote_literal(key)}:\"", escape(values), '"', "")


def object_of(members: list[pa.Array | str], length: int) -> pa.Array:
    """`{...}` from leading-comma members; null where every member is null."""
    if not members:
        return pa.nulls(length, pa.string())
    inner = concat_present(*members)
    present = pc.greater(pc.binary_length(inner), 0)
    body = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(inner, 1), "}", "")
    return pc.if_else(present, body, pa.scalar(None, pa.string()))

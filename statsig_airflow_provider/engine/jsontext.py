"""Vectorised JSON text building on Arrow string arrays.

Serialising a day through Python dicts costs microseconds a row; building the JSON text with
Arrow's string kernels costs a fraction of that and never holds a Python object per row.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

_NEEDS_ESCAPE = r'["\\\x00-\x1f]'
_CONTROL_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def quote(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """JSON string literals for a string array; nulls stay null."""
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
    return pc.binary_join_element_wise('"', values, '"', "")


def quote_literal(text: str) -> str:
    """A JSON string literal for one Python string (for constant keys)."""
    return quote(pa.array([text], pa.string()))[0].as_py()


def concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation; the result is null where any part is null."""
    return pc.binary_join_element_wise(*parts, "")


def concat_skip_nulls(*parts: pa.Array | str, separator: str = "") -> pa.Array:
    """Element-wise concatenation that leaves out null parts (never null itself).

    Not `null_handling="skip"`: in pyarrow 26 it drops the rows where every part is null.
    """
    if not separator:
        return pc.binary_join_element_wise(*[_or_empty(p) for p in parts], "")
    prefixed = [_or_empty(p if isinstance(p, str) else pc.binary_join_element_wise(separator, p, ""), separator)
                for p in parts]
    joined = pc.binary_join_element_wise(*prefixed, "")
    return pc.utf8_slice_codeunits(joined, len(separator))


def _or_empty(part: pa.Array | str, prefix: str = "") -> pa.Array | str:
    if isinstance(part, str):
        return prefix + part
    return pc.fill_null(part, "")


def object_fields(fields: list[pa.Array | str], length: int) -> pa.Array:
    """`{f1,f2,...}` from per-row `"key":value` fragments; null where every fragment is null."""
    if not fields:
        return pa.nulls(length, pa.string())
    body = concat_skip_nulls(*fields, separator=",")
    present = pc.invert(pc.equal(pc.utf8_length(body), 0))
    return pc.if_else(present, concat("{", body, "}"), pa.scalar(None, pa.string()))


def field(key: str, json_values: pa.Array) -> pa.Array:
    """`"key":value` per row; null where the value is null."""
    return concat(quote_literal(key) + ":", json_values)

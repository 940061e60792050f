"""Checked `warehouse.options`: what each warehouse hook accepts, refused precisely when wrong.

A typo in a spec must fail the first run with a suggestion, not silently turn a fast path off.
Hooks either declare their options as a dataclass (`parse_options`) or read them field by field
(`OptionReader`); both give the same kind of message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


class OptionError(ValueError):
    """A `warehouse.options` entry is missing, unknown or of the wrong kind."""


def did_you_mean(key: str, known: Iterable[str], noun: str) -> str:
    """" (did you mean 'x'?)" for a near miss, else "; known <noun>: a, b"."""
    known = sorted(known)
    hint = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else f"; known {noun}: {', '.join(known)}"


def _kind_names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)


def parse_options(cls: type[T], options: Mapping[str, Any] | None, warehouse: str,
                  kinds: Mapping[str, tuple[type, ...]] | None = None) -> T:
    """Build `cls` (a dataclass of options) from a spec's mapping; unlisted options must be text.

    Unknown keys and wrong types raise OptionError; None means "the default".
    """
    data = dict(options or {})
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            raise OptionError(f"unknown {warehouse} warehouse option {key!r}{did_you_mean(key, known, 'options')}")
    for key, value in data.items():
        want = (kinds or {}).get(key, (str,))
        if value is None:
            continue
        if (isinstance(value, bool) and bool not in want) or not isinstance(value, want):
            raise OptionError(f"{warehouse} warehouse option {key!r} must be {_kind_names(want)}, got {value!r}")
    return cls(**{k: v for k, v in data.items() if v is not None})


class OptionReader:
    """Reads a source's `warehouse.options` field by field, then refuses what was not read."""

    def __init__(self, options: Mapping[str, Any] | None, warehouse: str) -> None:
        self.data = dict(options or {})
        self.warehouse = warehouse
        self.seen: set[str] = set()

    def fail(self, key: str, message: str) -> OptionError:
        return OptionError(f"{self.warehouse} warehouse.options.{key}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        self.seen.add(key)
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (bool not in kinds and isinstance(value, bool)) or not isinstance(value, kinds):
            raise self.fail(key, f"must be {_kind_names(kinds)}, got {type(value).__name__} {value!r}")
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise self.fail(key, "must not be empty")
        return value

    def number(self, key: str, kind: type, default: Any, *, minimum: float | None = None) -> Any:
        value = self.get(key, kind, default)
        if value is not None and minimum is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}; got {value}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str) -> str:
        choices = tuple(choices)
        value = self.get(key, str, default)
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            key = unknown[0]
            raise self.fail(key, f"unknown option{did_you_mean(key, self.seen, 'options')}")

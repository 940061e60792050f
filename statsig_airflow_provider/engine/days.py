"""Day arithmetic: which instants a "day" covers in a source's timezone.

Statsig's calendar day is fixed UTC-8 with no daylight-saving change; a source may pick any
IANA zone instead. All instants leave this module as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

STATSIG_TIMEZONE_NAME = "statsig"
STATSIG_DAY_TZ = dt.timezone(dt.timedelta(hours=-8), "UTC-08:00")
UTC = dt.timezone.utc


def resolve_timezone(name: str) -> dt.tzinfo:
    """Return the tzinfo for a spec's timezone name ("statsig" = fixed UTC-8)."""
    if name.lower() == STATSIG_TIMEZONE_NAME:
        return STATSIG_DAY_TZ
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown timezone {name!r}: use 'statsig' (Statsig's fixed UTC-8 day) or an IANA name "
            "such as 'UTC' or 'Europe/Paris'"
        ) from exc


def parse_day(value: str | dt.date) -> dt.date:
    """Parse a YYYY-MM-DD day (a date passes through)."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"expected a day (YYYY-MM-DD), got a datetime {value!r}")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a day in YYYY-MM-DD form") from exc


@dataclass(frozen=True)
class DayWindow:
    """The half-open interval [start, end) that one day covers, in UTC."""

    day: dt.date
    tz: dt.tzinfo
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def of(cls, day: dt.date | str, tz: dt.tzinfo | str) -> DayWindow:
        day = parse_day(day)
        tzinfo = resolve_timezone(tz) if isinstance(tz, str) else tz
        start = dt.datetime.combine(day, dt.time(0), tzinfo).astimezone(UTC)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo).astimezone(UTC)
        return cls(day=day, tz=tzinfo, start=start, end=end)

    @property
    def start_epoch(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_epoch(self) -> int:
        return int(self.end.timestamp())

    def naive_bounds(self, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
        """Start and end as naive wall-clock datetimes in `tz` (for TIMESTAMP columns without zone)."""
        return (
            self.start.astimezone(tz).replace(tzinfo=None),
            self.end.astimezone(tz).replace(tzinfo=None),
        )


def latest_complete_day(now: dt.datetime, tz: dt.tzinfo | str) -> dt.date:
    """The most recent day that has fully ended at `now` in `tz` (i.e. yesterday there)."""
    tzinfo = resolve_timezone(tz) if isinstance(tz, str) else tz
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(tzinfo).date() - dt.timedelta(days=1)


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from start to end inclusive."""
    if end < start:
        raise ValueError(f"end day {end} is before start day {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]

"""Parsers for the scalar values that annotations hold: whole numbers, durations, quantities, names.

Each returns the parsed value or records a precise problem on the collector and returns None.
"""

from __future__ import annotations

import datetime as dt
import re

from policies.errors import Collector

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
_QUANTITY = re.compile(r"^\d+(?:\.\d+)?(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def whole_number(errors: Collector, where: str, raw: str, low: int, high: int, example: int) -> int | None:
    text = raw.strip()
    if not re.fullmatch(r"[0-9]+", text):
        errors.add(where, raw, f"must be a whole number from {low} to {high}", f'write it as digits, e.g. "{example}"')
        return None
    value = int(text)
    if not low <= value <= high:
        errors.add(where, raw, f"must be from {low} to {high}", f'choose a value in that range, e.g. "{example}"')
        return None
    return value


def boolean(errors: Collector, where: str, raw: str) -> bool | None:
    """`true` or `false`, as Kubernetes users write flags in annotations."""
    flag = raw.strip()
    if flag in ("true", "false"):
        return flag == "true"
    errors.add(where, raw, "must be true or false", 'write "true" or "false"')
    return None


def duration_seconds(errors: Collector, where: str, raw: str, low: float, high: float, example: str) -> float | None:
    """Go-style durations as Kubernetes users write them: 90s, 5m, 1h30m, 250ms."""
    text = raw.strip()
    match = _DURATION.fullmatch(text)
    if not text or match is None or not any(match.groups()):
        errors.add(
            where, raw, "must be a duration such as 30s, 5m or 1h30m (units h, m, s, ms)", f'write e.g. "{example}"'
        )
        return None
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    value = hours * 3600 + minutes * 60 + seconds + millis / 1000
    if not low <= value <= high:
        errors.add(
            where, raw, f"must be from {format_duration(low)} to {format_duration(high)}", f'write e.g. "{example}"'
        )
        return None
    return value


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def quantity(errors: Collector, where: str, raw: str, example: str) -> str | None:
    text = raw.strip()
    if not _QUANTITY.fullmatch(text):
        errors.add(where, raw, "must be a Kubernetes quantity such as 2Gi or 500Mi", f'write e.g. "{example}"')
        return None
    return text


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_UNITS |= {f"{u}i": 1024 ** (n + 1) for n, u in enumerate("KMGTPE")}


def quantity_bytes(text: str) -> int:
    """A quantity that matched the pattern above, in bytes (2Gi -> 2147483648); ValueError otherwise."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", text.strip())
    if not _QUANTITY.fullmatch(text.strip()) or match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 50Gi")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def is_dns_label(text: str) -> bool:
    return bool(_DNS_LABEL.fullmatch(text))


def is_dns_subdomain(text: str) -> bool:
    return len(text) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(text)) and ".." not in text


def api_time(text: object) -> dt.datetime | None:
    """A Kubernetes API timestamp (`2026-12-06T10:00:00Z`, whole seconds, UTC); None when absent or broken."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None

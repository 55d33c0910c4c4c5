"""Durations on the command line, written as in the annotations: 300s, 5m, 1h30m, 250ms (or plain seconds)."""

from __future__ import annotations

import argparse

from policies import Collector
from policies.values import duration_seconds


def duration(text: str) -> float:
    if text.replace(".", "", 1).isdigit():
        return float(text)
    errors = Collector()
    value = duration_seconds(errors, "duration", text, 0, 7 * 86400, "30s")
    if value is None:
        raise argparse.ArgumentTypeError(str(errors.problems[0]))
    return value

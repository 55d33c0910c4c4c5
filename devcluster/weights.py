"""What the model simulator does at start-up with a model folder: load it as a runtime would.

It reads config.json, the safetensors index and every shard it names (parsing each header, reading every
byte), at most `rate` MiB/s, the pace of moving weights into accelerator memory. So a simulated cold start
takes longer for a larger model, and a missing or truncated shard fails the start as it fails vLLM's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

CHUNK = 8 << 20


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Loaded:
    files: int
    bytes: int
    seconds: float


def shards_of(folder: Path) -> list[Path]:
    if not (folder / "config.json").is_file():
        raise LoadError(f"{folder}: no config.json (is this a model folder?)")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in names]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise LoadError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def load(folder: Path, rate_mib: float) -> Loaded:
    started = time.monotonic()
    total = 0
    shards = shards_of(folder)
    for shard in shards:
        total += _read_shard(shard, rate_mib, started, total)
    return Loaded(len(shards), total, time.monotonic() - started)


def _read_shard(shard: Path, rate_mib: float, started: float, before: int) -> int:
    try:
        handle = shard.open("rb")
    except FileNotFoundError:
        raise LoadError(f"{shard.name} is missing") from None
    with handle:
        size = shard.stat().st_size
        length = int.from_bytes(handle.read(8), "little")
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            raise LoadError(f"{shard.name}: the safetensors header is not JSON") from None
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + length + end != size:
            raise LoadError(f"{shard.name}: {size} bytes, its header describes {8 + length + end}")
        read = 8 + length
        while chunk := handle.read(CHUNK):
            read += len(chunk)
            ahead = started + (before + read) / (rate_mib * 2**20) - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    return read

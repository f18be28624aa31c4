"""Read an offline W&B run back from its ``run-*.wandb`` file (no network, no wandb internals).

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of records, each with a
7-byte header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last) and a piece of a
serialised ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

_BLOCK, _HEADER = 32768, 7


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path} is not a W&B run file")
    pos, out, buf = _HEADER, [], b""
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # block trailer too short for a header: padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        if kind == 0 and length == 0:
            break
        buf += data[pos : pos + length]
        pos += length
        if kind in (1, 4):
            out.append(buf)
            buf = b""
    return out


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """``{"run", "config", "history", "summary", "artifacts"}`` of an ``offline-run-*`` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = Path(run_dir).glob("run-*.wandb")
    run: dict[str, Any] = {}
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    artifacts: list[dict[str, Any]] = []
    for raw in _records(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run = {"name": r.display_name, "group": r.run_group, "tags": list(r.tags), "project": r.project}
            config.update({_key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            config.update({_key(u): json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({_key(u): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "artifact":
            a = rec.artifact
            artifacts.append({"name": a.name, "type": a.type, "aliases": list(a.aliases)})
    return {"run": run, "config": config, "history": history, "summary": summary, "artifacts": artifacts}

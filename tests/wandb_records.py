"""Read an offline W&B run file (``run-<id>.wandb``) back, to check what a run logged.

The file is a LevelDB-style log of protobuf ``Record`` messages: a 7-byte header, then 32 KiB
blocks of chunks, each with a 7-byte header (crc32, length, type: full/first/middle/last).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FILE_HEADER = struct.Struct("<4sHB")  # b":W&B", magic 0xBEE1, version
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path) -> Iterator[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    ident, _magic, _version = FILE_HEADER.unpack_from(data)
    if ident != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    offset, pending = FILE_HEADER.size, b""
    while offset + CHUNK_HEADER.size <= len(data):
        if BLOCK - offset % BLOCK < CHUNK_HEADER.size:  # block trailer: padding
            offset += BLOCK - offset % BLOCK
            continue
        _crc, length, kind = CHUNK_HEADER.unpack_from(data, offset)
        offset += CHUNK_HEADER.size
        chunk, offset = data[offset : offset + length], offset + length
        if kind in (FULL, FIRST):
            pending = chunk
        elif kind in (MIDDLE, LAST):
            pending += chunk
        else:
            break
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def history(path: str | Path) -> list[dict[str, Any]]:
    """Every logged history row, as ``{key: value}``."""
    return [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records(path)
        if r.WhichOneof("record_type") == "history"
    ]


def run_info(path: str | Path) -> dict[str, Any]:
    """The run record (id, group, name, job type) and the config keys it was given."""
    info: dict[str, Any] = {"config": {}}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info.update(
                id=r.run.run_id,
                group=r.run.run_group,
                name=r.run.display_name,
                job_type=r.run.job_type,
            )
            info["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            info["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
    return info


def summary(path: str | Path) -> dict[str, Any]:
    """The run summary as it stands at the end: every summary update applied in order, nested
    keys joined with ``/`` (``{"val/acc": {"max": 0.9}}``)."""
    values: dict[str, Any] = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "summary":
            for item in r.summary.update:
                values[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return values


def metric_definitions(path: str | Path) -> dict[str, dict[str, Any]]:
    """``run.define_metric`` calls by name (or glob): step metric and summary operations."""
    definitions = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "metric":
            metric = r.metric
            summaries = [field.name for field, on in metric.summary.ListFields() if on]
            definitions[metric.name or metric.glob_name] = {
                "step_metric": metric.step_metric,
                "summary": summaries,
            }
    return definitions


def artifacts(path: str | Path) -> list[dict[str, Any]]:
    """Artifacts the run logged, in order: name, type, aliases, files, metadata."""
    return [
        {
            "name": r.artifact.name,
            "type": r.artifact.type,
            "aliases": list(r.artifact.aliases),
            "files": [entry.path for entry in r.artifact.manifest.contents],
            "metadata": json.loads(r.artifact.metadata or "{}"),
        }
        for r in records(path)
        if r.WhichOneof("record_type") == "artifact"
    ]

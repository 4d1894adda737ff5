"""Read an offline W&B run back from its `run-<id>.wandb` file, without wandb sync and without a network.

The file is a LevelDB-style log (the format W&B documents for its transaction log): a 7-byte header
(':W&B', magic 0xBEE1, version), then 32 KiB blocks of records, each a 7-byte header (CRC32, length,
type: 1 full, 2 first, 3 middle, 4 last) and a chunk of a serialised `wandb_internal_pb2.Record`.
"""
from __future__ import annotations

import glob
import json
import os
import struct
import time
from typing import Dict, Iterator, List, Tuple

BLOCK = 32 * 1024
HEADER = 7


def _items(updates) -> dict:
    """Key -> value of config or history items (W&B stores a key as `key` or as the path `nested_key`)."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}


def records(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < HEADER:  # just created
        return
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        if pos + HEADER + length > len(data):  # still being written
            return
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            parts = [chunk]
        elif kind == 3:
            parts.append(chunk)
        elif kind == 4:
            yield b"".join(parts + [chunk])


def read_offline_run(run_dir: str, wait_s: float = 60.0) -> Tuple[dict, Dict[str, object], List[dict]]:
    """(run record: id, project, group, name; config {key: value}; history rows) of the offline W&B runs in
    `<run_dir>/wandb/offline-run-*` (several folders when a run was resumed).

    `run.finish()` can return before W&B's service process has written the log to disk, so each file is read
    again until it ends with its `exit` record, for at most `wait_s` seconds.
    """
    paths = sorted(glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb")))
    assert paths, f"no offline W&B run in {run_dir}/wandb"
    info, config, history = {}, {}, []
    for path in paths:
        deadline = time.monotonic() + wait_s
        parsed = _parse(path)
        while "exit" not in [kind for kind, _ in parsed] and time.monotonic() < deadline:
            time.sleep(0.2)
            parsed = _parse(path)
        for kind, record in parsed:
            if kind == "run":
                info = {"id": record.run.run_id, "project": record.run.project, "group": record.run.run_group,
                        "name": record.run.display_name}
                config.update(_items(record.run.config.update))
            elif kind == "config":
                config.update(_items(record.config.update))
            elif kind == "history":
                history.append(_items(record.history.item))
    return info, config, history


def _parse(path: str) -> list:
    from wandb.proto import wandb_internal_pb2

    parsed = []
    for raw in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        parsed.append((record.WhichOneof("record_type"), record))
    return parsed

#!/usr/bin/env python3
"""Generate events/kinesis-event.json (Python 3.11+, standard library only).

    python3 events/kinesis/generate.py          # (re)write events/kinesis-event.json
    python3 events/kinesis/generate.py --check  # write nothing; exit 1 if the file differs

A Lambda event from a Kinesis Data Stream fed by a CloudWatch Logs
subscription: each record's `data` is base64 of one gzip member holding a
compact `DATA_MESSAGE` or `CONTROL_MESSAGE`, exactly as CloudWatch Logs puts
them on the stream. The payloads are the readable twins in events/
(`NAME.decoded.json`, themselves written by events/generate.py), so the totals
of each data record are that scenario's in events/expected-totals.json.

Records, in sequence-number order (one shard):

  0  several-users-models   DATA_MESSAGE, 9 records
  1  control-message        CONTROL_MESSAGE: skipped whole
  2  month-boundary         CORRUPT: the gzip member cut in half (undecodable)
  3  day-boundary           DATA_MESSAGE, 3 records
  4  cache-tokens           DATA_MESSAGE, 4 records
  5  failed-call            DATA_MESSAGE, 2 records

Deterministic: gzip built by hand (mtime 0, no name, OS 255, deflate level 6),
standard padded base64, fixed sequence numbers and arrival times.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import zlib
from pathlib import Path

EVENTS_DIR = Path(__file__).resolve().parent.parent
OUT = EVENTS_DIR / "kinesis-event.json"

REGION = "us-east-1"
ACCOUNT = "111111111111"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/bedrock-meter-invocation-logs"
SHARD = "shardId-000000000000"
# (scenario, corrupt?)
RECORDS = [
    ("several-users-models", False),
    ("control-message", False),
    ("month-boundary", True),
    ("day-boundary", False),
    ("cache-tokens", False),
    ("failed-call", False),
]
FIRST_ARRIVAL = 1795165200  # 2026-11-20T08:20:00Z


def gzip_member(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY)
    body = comp.compress(data) + comp.flush()
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def sequence_number(i: int) -> str:
    value = f"4962{i:052d}"
    assert len(value) == 56 and value.isdigit()
    return value


def build() -> bytes:
    records = []
    for i, (scenario, corrupt) in enumerate(RECORDS):
        payload = json.loads((EVENTS_DIR / f"{scenario}.decoded.json").read_text("utf-8"))
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        data = gzip_member(raw)
        if corrupt:
            data = data[: len(data) // 2]
        seq = sequence_number(i)
        records.append({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": f"{scenario}-{i}",
                "sequenceNumber": seq,
                "data": base64.b64encode(data).decode("ascii"),
                "approximateArrivalTimestamp": FIRST_ARRIVAL + i + 0.5,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{SHARD}:{seq}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/bedrock-meter-kinesis-ingest",
            "awsRegion": REGION,
            "eventSourceARN": STREAM_ARN,
        })
    return (json.dumps({"Records": records}, indent=2) + "\n").encode("utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file differs")
    args = parser.parse_args()
    content = build()
    if args.check:
        if not OUT.exists() or OUT.read_bytes() != content:
            print(f"{OUT.relative_to(EVENTS_DIR.parent)} differs: run python3 events/kinesis/generate.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_bytes(content)
    print(f"wrote {OUT.relative_to(EVENTS_DIR.parent)} ({len(RECORDS)} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

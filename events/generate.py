#!/usr/bin/env python3
"""Generate the sample events in events/ (Python 3.11+, standard library only).

    python3 events/generate.py          # (re)write every file
    python3 events/generate.py --check  # write nothing; exit 1 if a file on disk differs

Output is byte-for-byte deterministic: no clock, no randomness, fixed key order,
gzip built by hand (mtime 0, no file name, OS byte 255, deflate level 6) and
standard padded base64. See events/README.md for what each file is.

The expected totals are computed by reading the encoded envelopes back
(base64 -> gunzip -> JSON -> each message parsed again), with their own small
implementation of the metering rules, not from the Python objects used to build
the records.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import uuid
import zlib
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

EVENTS_DIR = Path(__file__).resolve().parent

ACCOUNT = "111111111111"
LOG_GROUP = "/aws/bedrock/modelinvocations"
LOG_STREAM = "aws/bedrock/modelinvocations"
SUBSCRIPTION_FILTER = "bedrock-meter"
CANARY = "CANARY-PROMPT-7f3a"
MAX_ENVELOPE_BYTES = 1_000_000  # an asynchronous Lambda payload is at most 1 MB

HAIKU = "anthropic.claude-haiku-4-5-20251001-v1:0"
SONNET = "anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA_MICRO = "amazon.nova-micro-v1:0"
NOVA_PRO = "amazon.nova-pro-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
UNKNOWN_MODEL = "acme.unknown-model-v1:0"
APP_PROFILE = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/abc123example"

JSON_CT = "application/json"
S3_SAMPLE_PATH = (
    "s3/AWSLogs/111111111111/BedrockModelInvocationLogs/us-east-1/2026/11/20/10/sample.json.gz"
)


# --------------------------------------------------------------------------
# Deterministic encoding helpers
# --------------------------------------------------------------------------

def gzip_member(data: bytes) -> bytes:
    """One gzip member (RFC 1952): mtime 0, no name, XFL 0, OS 255, deflate level 6."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY)
    body = comp.compress(data) + comp.flush()
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def compact(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def pretty(obj) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def envelope_for(payload: dict) -> dict:
    raw = compact(payload).encode("utf-8")
    data = base64.b64encode(gzip_member(raw)).decode("ascii")  # standard alphabet, padded
    return {"awslogs": {"data": data}}


def fixture_uuid(name: str) -> str:
    """A version-4-shaped UUID derived from a name (stable across runs and machines)."""
    digest = hashlib.sha256(f"bedrock-meter/events/{name}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def epoch_ms(rfc3339: str) -> int:
    moment = datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1000


def log_event_id(scenario_no: int, event_no: int, ts_ms: int) -> str:
    """56 digits: '3', 2-digit scenario number, 13-digit timestamp, 40-digit event number."""
    value = f"3{scenario_no:02d}{ts_ms:013d}{event_no:040d}"
    assert len(value) == 56 and value.isdigit(), value
    return value


# --------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------

def assumed(session: str, role: str = "BedrockUsers") -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"


def iam_user(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def federated(name: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:federated-user/{name}"


ROOT = f"arn:aws:iam::{ACCOUNT}:root"
NO_IDENTITY = object()


# --------------------------------------------------------------------------
# Record builder (field order follows the records Bedrock writes)
# --------------------------------------------------------------------------

def record(
    key: str,
    timestamp: str,
    *,
    arn=NO_IDENTITY,
    model: str,
    operation: str = "Converse",
    region: str = "us-east-1",
    inference_region: str | None = None,
    metadata: dict | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read: int | None = None,
    cache_write: int | None = None,
    error_code: str | None = None,
    input_body=None,
    output_body=None,
    input_s3: str | None = None,
    output_s3: str | None = None,
) -> dict:
    request_id = fixture_uuid(f"request/{key}")
    rec: dict = {
        "schemaType": "ModelInvocationLog",
        "schemaVersion": "1.0",
        "timestamp": timestamp,
        "accountId": ACCOUNT,
    }
    if arn is not NO_IDENTITY:
        rec["identity"] = {"arn": arn}
    rec["region"] = region
    if inference_region is not None:
        rec["inferenceRegion"] = inference_region
    rec["requestId"] = request_id
    rec["operation"] = operation
    rec["modelId"] = model
    if metadata is not None:
        rec["requestMetadata"] = metadata
    if error_code is not None:
        rec["errorCode"] = error_code
        rec["input"] = {}
        rec["output"] = {}
        return rec
    inp: dict = {"inputContentType": JSON_CT}
    if input_body is not None:
        inp["inputBodyJson"] = input_body
    if input_s3 is not None:
        inp["inputBodyS3Path"] = input_s3
    if input_tokens is not None:
        inp["inputTokenCount"] = input_tokens
    if cache_read is not None:
        inp["cacheReadInputTokenCount"] = cache_read
    if cache_write is not None:
        inp["cacheWriteInputTokenCount"] = cache_write
    out: dict = {"outputContentType": JSON_CT}
    if output_body is not None:
        out["outputBodyJson"] = output_body
    if output_s3 is not None:
        out["outputBodyS3Path"] = output_s3
    if output_tokens is not None:
        out["outputTokenCount"] = output_tokens
    rec["input"] = inp
    rec["output"] = out
    return rec


# --------------------------------------------------------------------------
# Large bodies
# --------------------------------------------------------------------------

FILLER_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "invoice ledger quarterly forecast region latency throughput budget tenant summary "
    "report cluster replica shard index partition window cursor batch stream"
).split()


def filler_text(target_chars: int, seed: int) -> str:
    """Deterministic pseudo-prose of about target_chars characters with the canary
    at the start, every ~4 KB, and at the end (a simple LCG, not `random`)."""
    state = seed & 0xFFFFFFFF
    parts = [f"{CANARY} start of filler."]
    length = len(parts[0])
    next_canary = 4096
    sentence = 0
    while length < target_chars - 64:
        words = []
        for _ in range(8 + sentence % 7):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            words.append(FILLER_WORDS[state % len(FILLER_WORDS)])
        text = " " + " ".join(words).capitalize() + "."
        if length >= next_canary:
            text += f" {CANARY}."
            next_canary += 4096
        parts.append(text)
        length += len(text)
        sentence += 1
    parts.append(f" End of filler {CANARY}.")
    return "".join(parts)


def converse_input_body(text: str) -> dict:
    return {
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "system": [{"text": "You summarise documents for the finance team."}],
        "inferenceConfig": {"maxTokens": 16000, "temperature": 0.2},
    }


def converse_output_body(text: str, input_tokens: int, output_tokens: int) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": 41873},
    }


def stream_output_chunks(text: str, input_tokens: int, output_tokens: int) -> list:
    chunks: list = [{"messageStart": {"role": "assistant"}}]
    step = 512
    for start in range(0, len(text), step):
        chunks.append(
            {"contentBlockDelta": {"delta": {"text": text[start:start + step]}, "contentBlockIndex": 0}}
        )
    chunks.append({"contentBlockStop": {"contentBlockIndex": 0}})
    chunks.append({"messageStop": {"stopReason": "end_turn"}})
    chunks.append(
        {
            "metadata": {
                "usage": {
                    "inputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens + output_tokens,
                },
                "metrics": {"latencyMs": 38211},
            }
        }
    )
    return chunks


def s3_body_path(request_id: str, hour_prefix: str, kind: str) -> str:
    return (
        f"s3://bedrock-meter-logs-{ACCOUNT}/large-data/AWSLogs/{ACCOUNT}/"
        f"BedrockModelInvocationLogs/us-east-1/{hour_prefix}/data/{request_id}_{kind}.json.gz"
    )


# --------------------------------------------------------------------------
# Scenarios. Each item of `events` is a record (dict) or a raw string message
# with its own log event timestamp: ("raw", "<message>", ts_ms).
# Scenario numbers are part of the log event ids: never renumber, only append.
# --------------------------------------------------------------------------

def scenarios() -> list[dict]:
    out: list[dict] = []

    def add(no: int, name: str, events: list, message_type: str = "DATA_MESSAGE") -> None:
        out.append({"no": no, "name": name, "events": events, "message_type": message_type})

    add(1, "single-invocation", [
        record("single-invocation/1", "2026-11-20T10:15:42Z", arn=assumed("alice"), model=HAIKU,
               input_tokens=412, output_tokens=187),
    ])

    add(2, "several-users-models", [
        record("several-users-models/1", "2026-11-18T09:02:11Z", arn=assumed("alice"), model=HAIKU,
               input_tokens=1200, output_tokens=340),
        record("several-users-models/2", "2026-11-18T09:05:47Z", arn=assumed("alice"), model=HAIKU,
               input_tokens=860, output_tokens=212),
        record("several-users-models/3", "2026-11-18T09:31:02Z", arn=assumed("bob"), model=SONNET,
               operation="ConverseStream", metadata={"user": "bob@example.com", "feature": "code-review"},
               input_tokens=3400, output_tokens=910),
        record("several-users-models/4", "2026-11-18T10:12:55Z", arn=iam_user("carol"), model=NOVA_MICRO,
               operation="InvokeModel", input_tokens=150, output_tokens=60),
        record("several-users-models/5", "2026-11-18T11:40:19Z", arn=federated("dave"), model=NOVA_PRO,
               input_tokens=2200, output_tokens=480),
        record("several-users-models/6", "2026-11-18T12:03:33Z", arn=assumed("chatbot-prod", role="ChatbotService"),
               model=LLAMA, operation="InvokeModel",
               metadata={"user": "erin@example.com", "feature": "chat"},
               input_tokens=640, output_tokens=256),
        record("several-users-models/7", "2026-11-18T13:27:08Z", arn=assumed("frank"), model=SONNET,
               metadata={"user": "", "feature": "search"}, input_tokens=900, output_tokens=150),
        record("several-users-models/8", "2026-11-18T14:45:50Z", arn=assumed("alice"), model=UNKNOWN_MODEL,
               operation="InvokeModel", input_tokens=300, output_tokens=120),
        record("several-users-models/9", "2026-11-18T16:09:14Z", arn=ROOT, model=NOVA_MICRO,
               input_tokens=42, output_tokens=17),
    ])

    add(3, "day-boundary", [
        record("day-boundary/1", "2026-11-20T23:59:59Z", arn=assumed("bob"), model=HAIKU,
               input_tokens=500, output_tokens=120),
        record("day-boundary/2", "2026-11-20T23:59:59Z", arn=assumed("alice"), model=NOVA_MICRO,
               input_tokens=75, output_tokens=30),
        record("day-boundary/3", "2026-11-21T00:00:00Z", arn=assumed("bob"), model=HAIKU,
               input_tokens=640, output_tokens=90),
    ])

    add(4, "month-boundary", [
        record("month-boundary/1", "2026-10-31T23:59:31Z", arn=iam_user("carol"), model=SONNET,
               input_tokens=1800, output_tokens=420),
        record("month-boundary/2", "2026-10-31T23:59:58Z", arn=iam_user("carol"), model=SONNET,
               input_tokens=950, output_tokens=300),
        record("month-boundary/3", "2026-11-01T00:00:02Z", arn=iam_user("carol"), model=SONNET,
               input_tokens=1100, output_tokens=275),
        record("month-boundary/4", "2026-11-01T00:00:45Z", arn=federated("dave"), model=NOVA_MICRO,
               input_tokens=64, output_tokens=22),
    ])

    add(5, "control-message", [
        ("raw", "CWL CONTROL MESSAGE: Checking health of destination Lambda function.",
         epoch_ms("2026-11-20T09:00:00Z") + 123),
    ], message_type="CONTROL_MESSAGE")

    add(6, "non-json-line", [
        ("raw", "this is not json {", epoch_ms("2026-11-20T11:20:04Z") + 310),
        record("non-json-line/1", "2026-11-20T11:20:05Z", arn=assumed("alice"), model=HAIKU,
               input_tokens=350, output_tokens=95),
    ])

    add(7, "missing-identity", [
        record("missing-identity/1", "2026-11-20T12:00:07Z", model=NOVA_MICRO, operation="InvokeModel",
               input_tokens=88, output_tokens=40),
    ])

    add(8, "cache-tokens", [
        record("cache-tokens/1", "2026-11-19T14:00:03Z", arn=assumed("alice"), model=SONNET,
               input_tokens=25, output_tokens=310, cache_read=0, cache_write=4096),
        record("cache-tokens/2", "2026-11-19T14:02:40Z", arn=assumed("alice"), model=SONNET,
               input_tokens=31, output_tokens=275, cache_read=4096, cache_write=0),
        record("cache-tokens/3", "2026-11-19T14:05:12Z", arn=assumed("bob"), model=HAIKU,
               operation="ConverseStream", input_tokens=12, output_tokens=150,
               cache_read=2048, cache_write=512),
        record("cache-tokens/4", "2026-11-19T15:30:00Z", arn=iam_user("carol"), model=HAIKU,
               operation="InvokeModel", input_tokens=18, output_tokens=96, cache_read=1800),
    ])

    add(9, "failed-call", [
        record("failed-call/1", "2026-11-20T15:10:00Z", arn=federated("dave"), model=SONNET,
               error_code="ThrottlingException"),
        record("failed-call/2", "2026-11-20T15:10:02Z", arn=federated("dave"), model=SONNET,
               input_tokens=1500, output_tokens=400),
    ])

    add(10, "cross-region-profiles", [
        record("cross-region-profiles/1", "2026-11-21T08:00:12Z", arn=assumed("alice"),
               model="us." + SONNET, region="us-east-1", inference_region="us-west-2",
               input_tokens=2000, output_tokens=600),
        record("cross-region-profiles/2", "2026-11-21T08:15:40Z", arn=assumed("ingrid"),
               model="eu." + NOVA_MICRO, region="eu-west-1", inference_region="eu-central-1",
               input_tokens=500, output_tokens=200),
        record("cross-region-profiles/3", "2026-11-21T09:01:05Z", arn=assumed("bob"),
               model="global." + HAIKU, region="us-east-1", inference_region="us-west-2",
               input_tokens=800, output_tokens=220),
        record("cross-region-profiles/4", "2026-11-21T09:30:30Z", arn=assumed("kenji"),
               model="apac." + NOVA_MICRO, region="ap-northeast-1", inference_region="ap-northeast-3",
               input_tokens=120, output_tokens=48),
    ])

    add(11, "application-inference-profile", [
        record("application-inference-profile/1", "2026-11-21T10:00:00Z", arn=iam_user("carol"),
               model=APP_PROFILE, input_tokens=700, output_tokens=210),
        record("application-inference-profile/2", "2026-11-21T10:20:41Z", arn=assumed("alice"),
               model=APP_PROFILE, operation="InvokeModel", input_tokens=330, output_tokens=90),
    ])

    big_in_1 = filler_text(60_000, seed=1)
    big_out_1 = filler_text(60_000, seed=2)
    big_in_2 = filler_text(60_000, seed=3)
    big_out_2 = filler_text(60_000, seed=4)
    add(12, "large-bodies", [
        record("large-bodies/1", "2026-11-22T10:00:01Z", arn=assumed("alice"), model=SONNET,
               input_tokens=15321, output_tokens=14870,
               input_body=converse_input_body(big_in_1),
               output_body=converse_output_body(big_out_1, 15321, 14870)),
        record("large-bodies/2", "2026-11-22T10:03:30Z", arn=assumed("alice"), model=HAIKU,
               operation="ConverseStream", input_tokens=15102, output_tokens=15011,
               input_body=converse_input_body(big_in_2),
               output_body=stream_output_chunks(big_out_2, 15102, 15011)),
    ])

    s3_ids = [fixture_uuid(f"request/s3-offloaded-bodies/{n}") for n in (1, 2)]
    add(13, "s3-offloaded-bodies", [
        record("s3-offloaded-bodies/1", "2026-11-22T11:00:00Z", arn=assumed("bob"), model=SONNET,
               input_tokens=41000, output_tokens=30000,
               input_s3=s3_body_path(s3_ids[0], "2026/11/22/11", "input"),
               output_s3=s3_body_path(s3_ids[0], "2026/11/22/11", "output")),
        record("s3-offloaded-bodies/2", "2026-11-22T11:05:00Z", arn=iam_user("carol"), model=NOVA_PRO,
               operation="InvokeModel", input_tokens=28500, output_tokens=26000,
               input_s3=s3_body_path(s3_ids[1], "2026/11/22/11", "input"),
               output_s3=s3_body_path(s3_ids[1], "2026/11/22/11", "output")),
    ])
    return out


def s3_sample_members() -> list[list[dict]]:
    """Records of the S3 sample file, as two gzip members (3 lines, then 2)."""
    first = [
        record("s3-sample/1", "2026-11-20T10:00:14Z", arn=assumed("alice"), model=HAIKU,
               input_tokens=220, output_tokens=80),
        record("s3-sample/2", "2026-11-20T10:07:51Z", arn=assumed("bob"), model=NOVA_MICRO,
               operation="InvokeModel", input_tokens=95, output_tokens=41),
        record("s3-sample/3", "2026-11-20T10:22:36Z", arn=iam_user("carol"), model=SONNET,
               operation="ConverseStream", input_tokens=2600, output_tokens=700,
               cache_read=1024, cache_write=0),
    ]
    second = [
        record("s3-sample/4", "2026-11-20T10:41:09Z", arn=assumed("alice"), model=HAIKU,
               input_tokens=310, output_tokens=120),
        record("s3-sample/5", "2026-11-20T10:58:47Z", arn=federated("dave"), model=LLAMA,
               operation="InvokeModel", error_code="ThrottlingException"),
    ]
    return [first, second]


# --------------------------------------------------------------------------
# Building payloads
# --------------------------------------------------------------------------

def build_payload(scenario: dict) -> dict:
    log_events = []
    for event_no, item in enumerate(scenario["events"], start=1):
        if isinstance(item, tuple):
            _, message, ts_ms = item
        else:
            message = compact(item)
            # the log event is written shortly after the invocation, within the same second
            ts_ms = epoch_ms(item["timestamp"]) + 100 + (event_no * 211 + scenario["no"] * 37) % 800
        event_id = log_event_id(scenario["no"], event_no, ts_ms)
        log_events.append({"id": event_id, "timestamp": ts_ms, "message": message})

    if scenario["message_type"] == "CONTROL_MESSAGE":
        # AWS's own control messages have an empty group, stream and filter list, and "" ids.
        for ev in log_events:
            ev["id"] = ""
        return {
            "messageType": "CONTROL_MESSAGE",
            "owner": "CloudwatchLogs",
            "logGroup": "",
            "logStream": "",
            "subscriptionFilters": [],
            "logEvents": log_events,
        }
    return {
        "messageType": "DATA_MESSAGE",
        "owner": ACCOUNT,
        "logGroup": LOG_GROUP,
        "logStream": LOG_STREAM,
        "subscriptionFilters": [SUBSCRIPTION_FILTER],
        "logEvents": log_events,
    }


def on_failure_record(single_envelope: dict) -> dict:
    invocation_id = fixture_uuid("lambda-invocation/single-invocation")
    return {
        "version": "1.0",
        "timestamp": "2026-11-20T10:19:03.518Z",
        "requestContext": {
            "requestId": invocation_id,
            "functionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:bedrock-meter-ingest:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": single_envelope,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorType": "StoreUnavailable",
            "errorMessage": "usage store unavailable: ServiceUnavailableException after 3 attempts; "
                            "nothing from this batch was committed, replay it",
        },
    }


# --------------------------------------------------------------------------
# Independent metering (reads only the encoded bytes)
# --------------------------------------------------------------------------

USER_RULE = (
    'requestMetadata["user"] if present and a non-empty string; else the session name of an '
    "assumed-role ARN (arn:...:assumed-role/ROLE/SESSION); else the name after user/ or "
    "federated-user/ in the ARN; else the whole identity.arn if non-empty; else \"unknown\""
)


def resolve_user(rec: dict) -> str:
    meta = rec.get("requestMetadata")
    if isinstance(meta, dict):
        user = meta.get("user")
        if isinstance(user, str) and user != "":
            return user
    identity = rec.get("identity")
    arn = identity.get("arn") if isinstance(identity, dict) else None
    if not isinstance(arn, str) or arn == "":
        return "unknown"
    resource = arn.split(":", 5)[5] if arn.count(":") >= 5 else ""
    if resource.startswith("assumed-role/"):
        pieces = resource.split("/")
        if len(pieces) >= 3 and pieces[2]:
            return pieces[2]
    for prefix in ("federated-user/", "user/"):
        if resource.startswith(prefix) and len(resource) > len(prefix):
            return resource[len(prefix):]
    return arn


def count(obj, key: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def totals_of(records: list[dict]) -> list[dict]:
    rows: dict[tuple, dict] = {}
    for rec in records:
        day = datetime.strptime(rec["timestamp"], "%Y-%m-%dT%H:%M:%SZ").date().isoformat()
        key = (resolve_user(rec), rec.get("modelId", ""), day)
        row = rows.setdefault(key, OrderedDict(
            user=key[0], model=key[1], day=key[2], invocations=0, errors=0,
            input_tokens=0, output_tokens=0, cache_read_input_tokens=0, cache_write_input_tokens=0,
        ))
        row["invocations"] += 1
        if rec.get("errorCode"):
            row["errors"] += 1
        row["input_tokens"] += count(rec.get("input"), "inputTokenCount")
        row["output_tokens"] += count(rec.get("output"), "outputTokenCount")
        row["cache_read_input_tokens"] += count(rec.get("input"), "cacheReadInputTokenCount")
        row["cache_write_input_tokens"] += count(rec.get("input"), "cacheWriteInputTokenCount")
    return [rows[k] for k in sorted(rows, key=lambda k: (k[2], k[0], k[1]))]


def decode_envelope(envelope_bytes: bytes) -> dict:
    envelope = json.loads(envelope_bytes)
    assert list(envelope) == ["awslogs"] and list(envelope["awslogs"]) == ["data"], "envelope shape"
    return json.loads(zlib.decompress(base64.b64decode(envelope["awslogs"]["data"], validate=True), 31))


def meter_payload(payload: dict) -> dict:
    records, skipped = [], []
    if payload["messageType"] == "DATA_MESSAGE":
        for ev in payload["logEvents"]:
            try:
                rec = json.loads(ev["message"])
            except ValueError:
                skipped.append(ev["id"])
                continue
            if not isinstance(rec, dict):
                skipped.append(ev["id"])
                continue
            records.append(rec)
    return {
        "message_type": payload["messageType"],
        "log_event_count": len(payload["logEvents"]),
        "record_count": len(records),
        "skipped_log_event_ids": skipped,
        "request_ids": sorted(r["requestId"] for r in records if "requestId" in r),
        "totals": totals_of(records),
    }


def read_multi_member_gzip(data: bytes) -> tuple[bytes, int]:
    out, members = b"", 0
    while data:
        d = zlib.decompressobj(31)
        out += d.decompress(data) + d.flush()
        data = d.unused_data
        members += 1
    return out, members


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def build_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    all_scenarios = scenarios()
    expected_scenarios: dict = {}
    envelopes: dict[str, dict] = {}

    for sc in all_scenarios:
        payload = build_payload(sc)
        envelope = envelope_for(payload)
        envelopes[sc["name"]] = envelope
        env_bytes = (json.dumps(envelope) + "\n").encode("ascii")
        files[f"{sc['name']}.json"] = env_bytes
        files[f"{sc['name']}.decoded.json"] = pretty(payload)

    # Expected totals: from the encoded bytes only.
    for sc in all_scenarios:
        payload = decode_envelope(files[f"{sc['name']}.json"])
        expected_scenarios[sc["name"]] = {"envelope": f"{sc['name']}.json", **meter_payload(payload)}

    members = s3_sample_members()
    jsonl_lines = [[compact(r) + "\n" for r in member] for member in members]
    files["s3/sample.jsonl"] = "".join(line for m in jsonl_lines for line in m).encode("utf-8")
    files[S3_SAMPLE_PATH] = b"".join(gzip_member("".join(m).encode("utf-8")) for m in jsonl_lines)

    s3_text, s3_members = read_multi_member_gzip(files[S3_SAMPLE_PATH])
    s3_records = [json.loads(line) for line in s3_text.decode("utf-8").splitlines() if line.strip()]

    files["on-failure-destination.json"] = pretty(on_failure_record(envelopes["single-invocation"]))

    expected = OrderedDict()
    expected["generated_by"] = "python3 events/generate.py (do not edit by hand)"
    expected["rules"] = OrderedDict(
        user=USER_RULE,
        model="modelId exactly as logged: no prefix stripping, no profile resolution",
        day="UTC date (YYYY-MM-DD) of the record's own timestamp, not the log event timestamp",
        tokens="missing counters count as 0; errors = records with a non-empty errorCode, "
               "which also count as invocations",
        skipped="log events of a DATA_MESSAGE whose message is not a JSON object; "
                "a CONTROL_MESSAGE is skipped whole and lists nothing",
        totals_order="sorted by (day, user, model)",
    )
    expected["scenarios"] = expected_scenarios
    expected["s3_sample"] = OrderedDict(
        file=S3_SAMPLE_PATH,
        readable_twin="s3/sample.jsonl",
        gzip_members=s3_members,
        record_count=len(s3_records),
        request_ids=sorted(r["requestId"] for r in s3_records),
        totals=totals_of(s3_records),
    )
    expected["on_failure_destination"] = OrderedDict(
        file="on-failure-destination.json",
        request_payload_is="single-invocation.json",
        note="replaying requestPayload must give exactly the single-invocation totals",
    )
    # Costs are computed by hand (events/README.md, "Costs"), never here:
    # keep the section exactly as it is on disk.
    on_disk = EVENTS_DIR / "expected-totals.json"
    if on_disk.exists():
        costs = json.loads(on_disk.read_text(encoding="utf-8")).get("costs")
        if costs is not None:
            expected["costs"] = costs
    files["expected-totals.json"] = pretty(expected)
    return files


def verify(files: dict[str, bytes]) -> None:
    """Structural checks; raise AssertionError on any problem."""
    event_ids: list[str] = []
    request_ids: list[str] = []
    for name in (n[: -len(".decoded.json")] for n in files if n.endswith(".decoded.json")):
        env_bytes = files[f"{name}.json"]
        assert len(env_bytes) < MAX_ENVELOPE_BYTES, f"{name}.json is {len(env_bytes)} bytes"
        envelope = json.loads(env_bytes)
        data = envelope["awslogs"]["data"]
        assert len(data) % 4 == 0, f"{name}: base64 not padded"
        assert base64.b64encode(base64.b64decode(data, validate=True)).decode() == data
        decoded = decode_envelope(env_bytes)
        assert decoded == json.loads(files[f"{name}.decoded.json"]), f"{name}: twin differs"
        for ev in decoded["logEvents"]:
            assert len(ev["message"].encode()) < 1_000_000, f"{name}: log event over 1 MB"
            if decoded["messageType"] == "DATA_MESSAGE":
                assert len(ev["id"]) == 56 and ev["id"].isdigit(), ev["id"]
                event_ids.append(ev["id"])
                try:
                    rec = json.loads(ev["message"])
                except ValueError:
                    continue
                request_ids.append(rec["requestId"])
                rec_s = epoch_ms(rec["timestamp"]) // 1000
                assert ev["timestamp"] // 1000 == rec_s, f"{name}: event time vs record time"
    for line in files["s3/sample.jsonl"].decode().splitlines():
        request_ids.append(json.loads(line)["requestId"])
    text, members = read_multi_member_gzip(files[S3_SAMPLE_PATH])
    assert members == 2 and text == files["s3/sample.jsonl"], "s3 sample vs twin"
    assert len(set(event_ids)) == len(event_ids), "duplicate log event id"
    assert len(set(request_ids)) == len(request_ids), "duplicate requestId"
    ofd = json.loads(files["on-failure-destination.json"])
    assert ofd["requestPayload"] == json.loads(files["single-invocation.json"])
    assert CANARY not in files["expected-totals.json"].decode()
    large = files["large-bodies.decoded.json"].decode()
    assert large.count(CANARY) >= 4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any generated file on disk differs")
    args = parser.parse_args()

    files = build_files()
    verify(files)

    stale = []
    for rel, content in sorted(files.items()):
        path = EVENTS_DIR / rel
        current = path.read_bytes() if path.exists() else None
        if current == content:
            continue
        stale.append(rel)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

    if args.check:
        for rel in stale:
            print(f"out of date: events/{rel}", file=sys.stderr)
        if stale:
            print("run: python3 events/generate.py", file=sys.stderr)
            return 1
        print(f"{len(files)} files up to date")
        return 0
    print(f"{len(files)} files, {len(stale)} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes a synthetic corpus of CloudWatch Logs Lambda events of Bedrock
invocation records, for measuring replay throughput and write units.

    scripts/gen-corpus.py OUT_DIR [--records 10000] [--per-file 500]
                          [--users 50] [--models 5] [--days 2] [--body-bytes 0]
                          [--tags 0]

--tags 1 adds requestMetadata `team` (8 teams, each user in one), --tags 2
also `feature` (4 features, per record), for ATTRIBUTION_TAGS=team,feature.
Tag values come from their own random stream: the rest of the corpus is the
same whatever --tags.

Default mode: --records records, --per-file to a file, each at a random
second of --days days from 2026-11-01 (UTC).

Dense mode, steady traffic delivered as the CloudWatch Logs subscription
does (one delivery per second of log events):

    scripts/gen-corpus.py OUT_DIR --rate 100 --seconds 600 [--users 50]
                          [--models 5] [--tags 0] [--body-bytes 0]

writes --seconds files, one per second of traffic from 2026-11-01T12:00:00Z
on (consecutive seconds), each with --rate records timestamped within that
second (log event times spread over it); users, models, tags and token
counts are drawn as in the default mode. --records, --per-file and --days
are ignored (the default mode's output is unchanged by this mode).
"""
import argparse
import base64
import gzip
import json
import os
import random
import time

MODELS = [
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "amazon.nova-micro-v1:0",
    "amazon.nova-pro-v1:0",
    "meta.llama3-3-70b-instruct-v1:0",
]


TEAMS = ["payments", "search", "ads", "growth", "infra", "support", "data", "mobile"]
FEATURES = ["chat", "summarise", "classify", "extract"]


# Dense mode starts at 2026-11-01T12:00:00Z.
DENSE_START = 1793534400


def record(i, rng, args, trng, timestamp=None):
    if timestamp is None:
        day = 1 + rng.randrange(args.days)
        timestamp = f"2026-11-{day:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
    body = "x" * (args.body_bytes // 2)
    rec = {
        "schemaType": "ModelInvocationLog", "schemaVersion": "1.0",
        "timestamp": timestamp,
        "accountId": "111111111111", "region": "us-east-1",
        "requestId": f"{args.seed:08x}-{i:04x}-4000-8000-{i:012x}", "operation": "Converse",
        "modelId": MODELS[rng.randrange(args.models)],
        "identity": {"arn": f"arn:aws:sts::111111111111:assumed-role/BedrockUsers/user{rng.randrange(args.users)}"},
        "input": {"inputContentType": "application/json", "inputTokenCount": rng.randrange(1, 4000)},
        "output": {"outputContentType": "application/json", "outputTokenCount": rng.randrange(1, 1000)},
    }
    if args.tags >= 1:
        user = int(rec["identity"]["arn"].rsplit("user", 1)[1])
        rec["requestMetadata"] = {"team": TEAMS[user % len(TEAMS)]}
        if args.tags >= 2:
            rec["requestMetadata"]["feature"] = FEATURES[trng.randrange(len(FEATURES))]
    if body:
        rec["input"]["inputBodyJson"] = {"messages": [{"role": "user", "content": [{"text": body}]}]}
        rec["output"]["outputBodyJson"] = {"output": {"message": {"content": [{"text": body}]}}}
    return rec


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--records", type=int, default=10000)
    p.add_argument("--per-file", type=int, default=500)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--models", type=int, default=5)
    p.add_argument("--days", type=int, default=2)
    p.add_argument("--body-bytes", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tags", type=int, default=0, choices=[0, 1, 2])
    p.add_argument("--rate", type=int, help="dense mode: records per second (needs --seconds)")
    p.add_argument("--seconds", type=int, help="dense mode: seconds of traffic, one file each (needs --rate)")
    args = p.parse_args()
    if (args.rate is None) != (args.seconds is None):
        p.error("dense mode needs both --rate R and --seconds N")
    if args.rate is not None and (args.rate < 1 or args.seconds < 1):
        p.error("--rate and --seconds must be at least 1")
    rng = random.Random(args.seed)
    trng = random.Random(args.seed + 1_000_003)
    os.makedirs(args.out, exist_ok=True)
    if args.rate is not None:
        files = dense_files(args, rng, trng)
    else:
        files = default_files(args, rng, trng)
    for f, events in enumerate(files):
        payload = {"messageType": "DATA_MESSAGE", "owner": "111111111111",
                   "logGroup": "/aws/bedrock/modelinvocations", "logStream": "aws/bedrock/modelinvocations",
                   "subscriptionFilters": ["bedrock-meter"], "logEvents": events}
        data = base64.b64encode(gzip.compress(json.dumps(payload).encode(), 6, mtime=0)).decode()
        with open(os.path.join(args.out, f"{f:05d}.json"), "w") as fh:
            json.dump({"awslogs": {"data": data}}, fh)


def default_files(args, rng, trng):
    for start in range(0, args.records, args.per_file):
        yield [
            {"id": f"{i:056d}", "timestamp": 1793000000000 + i, "message": json.dumps(record(i, rng, args, trng), separators=(",", ":"))}
            for i in range(start, min(start + args.per_file, args.records))
        ]


def dense_files(args, rng, trng):
    for sec in range(args.seconds):
        t = DENSE_START + sec
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        first = sec * args.rate
        yield [
            {"id": f"{i:056d}", "timestamp": t * 1000 + (i - first) * 1000 // args.rate,
             "message": json.dumps(record(i, rng, args, trng, stamp), separators=(",", ":"))}
            for i in range(first, first + args.rate)
        ]


if __name__ == "__main__":
    main()

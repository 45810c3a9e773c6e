"""Plain Python pipeline over CloudWatch Logs envelopes, the way a typical
Python metering Lambda does it: json.loads, b64decode, gzip.decompress,
json.loads of each record, a dict of (user, model, day) sums. Prints
`seconds=<processing time>` (files are read into memory first).

    python3 baseline.py DIR
"""
import base64
import gzip
import json
import os
import sys
import time


def main(directory):
    blobs = [open(os.path.join(directory, f), "rb").read() for f in sorted(os.listdir(directory))]
    start = time.process_time()
    totals = {}
    for blob in blobs:
        env = json.loads(blob)
        payload = json.loads(gzip.decompress(base64.b64decode(env["awslogs"]["data"])))
        for event in payload.get("logEvents", []):
            r = json.loads(event["message"])
            meta = r.get("requestMetadata") or {}
            user = meta.get("user") or (r.get("identity") or {}).get("arn", "unknown").rsplit("/", 1)[-1]
            key = (user, r.get("modelId"), r.get("timestamp", "")[:10])
            i = r.get("input") or {}
            o = r.get("output") or {}
            t = totals.setdefault(key, [0, 0, 0, 0, 0])
            t[0] += 1
            t[1] += i.get("inputTokenCount", 0)
            t[2] += o.get("outputTokenCount", 0)
            t[3] += i.get("cacheReadInputTokenCount", 0)
            t[4] += i.get("cacheWriteInputTokenCount", 0)
    elapsed = time.process_time() - start
    print(f"keys={len(totals)} seconds={elapsed:.4f}")


if __name__ == "__main__":
    main(sys.argv[1])

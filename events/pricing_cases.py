#!/usr/bin/env python3
"""Write the pricing sample events (long context, 1-hour cache writes) with
generate.py's helpers and conventions (deterministic gzip, padded base64,
UUID-shaped request ids, 56-digit log event ids; scenario numbers 90+).

    python3 events/pricing_cases.py            # (re)write the four files
    python3 events/pricing_cases.py --check    # exit 1 if a file on disk differs

Costs are in docs/prices.md; these files are not part of expected-totals.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate as g  # noqa: E402

SONNET_45 = g.SONNET
SONNET_46 = "anthropic.claude-sonnet-4-6"


def anthropic_body(input_tokens: int, out: int, write_5m: int, write_1h: int) -> dict:
    """An InvokeModel (Messages API) response: metadata only, no text."""
    return {"id": "msg_fixture", "type": "message", "role": "assistant", "content": [],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": write_5m + write_1h,
                      "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_5m_input_tokens": write_5m,
                                         "ephemeral_1h_input_tokens": write_1h},
                      "output_tokens": out}}


def stream_chunks(input_tokens: int, out: int, write_5m: int, write_1h: int) -> list:
    """InvokeModelWithResponseStream chunks: the split is in message_start."""
    start = anthropic_body(input_tokens, 1, write_5m, write_1h)
    return [{"type": "message_start", "message": start},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": out}},
            {"type": "message_stop"}]


def cases() -> list[dict]:
    t = "2026-11-20T1{}:0{}:00Z"
    long_context = [
        g.record("long-context/1", t.format(0, 1), arn=g.assumed("alice"), model=f"us.{SONNET_45}",
                 input_tokens=150_000, output_tokens=2_000),
        g.record("long-context/2", t.format(0, 2), arn=g.assumed("alice"), model=f"us.{SONNET_45}",
                 input_tokens=250_000, output_tokens=2_000),
        g.record("long-context/3", t.format(0, 3), arn=g.assumed("bob"), model=f"global.{SONNET_45}",
                 input_tokens=190_000, cache_read=20_000, output_tokens=1_000),
        g.record("long-context/4", t.format(0, 4), arn=g.assumed("bob"), model=f"global.{SONNET_46}",
                 input_tokens=250_000, output_tokens=2_000),
    ]
    cache_1h = [
        g.record("cache-1h/1", t.format(1, 1), arn=g.assumed("alice"), model=f"us.{SONNET_46}",
                 operation="InvokeModel", input_tokens=50, cache_write=4_000, output_tokens=100,
                 output_body=anthropic_body(50, 100, 1_000, 3_000)),
        g.record("cache-1h/2", t.format(1, 2), arn=g.assumed("alice"), model=f"us.{SONNET_46}",
                 operation="Converse", input_tokens=50, cache_write=4_000, output_tokens=100),
        g.record("cache-1h/3", t.format(1, 3), arn=g.assumed("bob"), model=f"global.{SONNET_46}",
                 operation="InvokeModelWithResponseStream", input_tokens=10, cache_write=2_000,
                 output_tokens=20, output_body=stream_chunks(10, 20, 0, 2_000)),
        g.record("cache-1h/4", t.format(1, 4), arn=g.assumed("bob"), model=f"us.{g.HAIKU}",
                 operation="InvokeModel", input_tokens=10, cache_write=2_000, output_tokens=20,
                 output_body=anthropic_body(10, 20, 0, 2_000)),
    ]
    return [
        {"no": 90, "name": "long-context", "events": long_context, "message_type": "DATA_MESSAGE"},
        {"no": 91, "name": "cache-1h", "events": cache_1h, "message_type": "DATA_MESSAGE"},
    ]


def main() -> int:
    check = "--check" in sys.argv[1:]
    differs = []
    for scenario in cases():
        payload = g.build_payload(scenario)
        files = {
            f"{scenario['name']}.json": (g.json.dumps(g.envelope_for(payload)) + "\n").encode("ascii"),
            f"{scenario['name']}.decoded.json": g.pretty(payload),
        }
        assert g.decode_envelope(files[f"{scenario['name']}.json"]) == payload
        for name, data in files.items():
            path = g.EVENTS_DIR / name
            if check:
                if not path.exists() or path.read_bytes() != data:
                    differs.append(name)
            else:
                path.write_bytes(data)
    if differs:
        print("differs:", ", ".join(differs), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo's load: calls a URL by name at a steady rate and reports once a second.

Runs under `trellis run` like any client, so `http://productpage:9080/` goes
through its sidecar (HTTP_PROXY). Each second it prints one JSON line: calls,
failures, and which reviews version answered (read from productpage's answer).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import httpx


def _reviews_version(answer: dict[str, object]) -> str:
    calls = answer.get("calls")
    if isinstance(calls, dict):
        for url, sub in calls.items():
            if "reviews" in url and isinstance(sub, dict):
                return str(sub.get("name") or sub.get("error") or "?")
    return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=50.0, help="calls per second")
    p.add_argument("--seconds", type=float, default=0.0, help="0: until stopped")
    args = p.parse_args()
    interval = 1.0 / args.rate
    start = time.monotonic()
    window: Counter[str] = Counter()
    failed = total = 0
    last = start
    with httpx.Client(timeout=10) as client:  # HTTP_PROXY: the sidecar
        while not args.seconds or time.monotonic() - start < args.seconds:
            total += 1
            try:
                r = client.get(args.url)
                if r.status_code == 200:
                    window[_reviews_version(r.json())] += 1
                else:
                    failed += 1
                    window[f"HTTP {r.status_code} {r.headers.get('x-trellis-flags', '')}"] += 1
            except httpx.HTTPError as e:
                failed += 1
                window[type(e).__name__] += 1
            now = time.monotonic()
            if now - last >= 1.0:
                print(json.dumps({"calls": sum(window.values()), "split": window}), flush=True)
                window = Counter()
                last = now
            time.sleep(max(0.0, interval - (time.monotonic() - now)))
    print(json.dumps({"summary": {"calls": total, "failed": failed}}), flush=True)


if __name__ == "__main__":
    main()

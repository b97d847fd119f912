"""Parse-only throughput of the line-protocol and Telegraf JSON parsers (one core).

    .venv/bin/python bench/parse_throughput.py

Prints the median of 7 runs per case and saves ``bench/results/parse_throughput.json``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from incidents.parsing import parse_message

LINE = (
    b"cpu,cpu=cpu0,host=web-01 usage_user=12.5,usage_system=3.25,usage_idle=84.25 "
    b"1700000000000000000"
)
JSON_METRIC = (
    b'{"name":"cpu","tags":{"cpu":"cpu0","host":"web-01"},'
    b'"fields":{"usage_user":12.5,"usage_system":3.25,"usage_idle":84.25},"timestamp":1700000000}'
)
RESULTS = Path(__file__).parent / "results"


def points_per_second(message: bytes, points_per_message: int, repeat: int = 7) -> float:
    runs = []
    for _ in range(repeat):
        n = 0
        started = time.perf_counter()
        while time.perf_counter() - started < 0.5:
            parse_message(message)
            n += 1
        runs.append(n * points_per_message / (time.perf_counter() - started))
    return statistics.median(runs)


def main() -> None:
    cases = {
        "line_protocol_1_line": (LINE, 3),
        "line_protocol_500_lines": (b"\n".join([LINE] * 500), 1500),
        "telegraf_json_batch_100": (
            b'{"metrics":[' + b",".join([JSON_METRIC] * 100) + b"]}",
            300,
        ),
    }
    result = {name: round(points_per_second(msg, n)) for name, (msg, n) in cases.items()}
    for name, rate in result.items():
        print(f"{name:<28} {rate:>12,} points/s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parse_throughput.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Throughput and latency of bare, gated and naive routes, measured in one run.

Usage: ``python -m benchmarks.load [--seconds 10] [--rounds 3] [--connections 32]``

Needs ``wrk`` on the PATH (Debian package ``wrk``). One uvicorn worker serves the app,
and wrk runs in a second process with one thread. The emulator is a third process,
which only the naive route calls. Rounds interleave the routes so that drift of the
machine affects all of them alike; the table reports the median round.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass

from aldero_fastapi.testing import make_token
from benchmarks.servers import JWT_SECRET, app_process, emulator_process

ROUTES = ("bare", "gated", "gated-entitlements", "naive")
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Measurement:
    """One wrk run of one route."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(url: str, token: str, seconds: int, connections: int) -> Measurement:
    """Run wrk against ``url`` and parse its throughput, latency percentiles and errors."""
    command = [
        "wrk",
        "--latency",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    throughput = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Measurement(
        requests_per_second=throughput,
        p50_ms=_percentile(output, "50%"),
        p99_ms=_percentile(output, "99%"),
        errors=int(errors.group(1)) if errors else 0,
    )


def _percentile(output: str, label: str) -> float:
    match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    assert match is not None, f"wrk printed no {label} latency"
    return float(match.group(1)) * UNITS[match.group(2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=int, default=10, help="duration of one wrk run, in seconds"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the three routes")
    parser.add_argument("--connections", type=int, default=32, help="open connections of wrk")
    arguments = parser.parse_args()

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed; install the Debian package wrk")

    token = make_token("alice", secret=JWT_SECRET, lifetime_seconds=24 * 3600)
    results: dict[str, list[Measurement]] = {route: [] for route in ROUTES}

    with emulator_process() as base_url, app_process(base_url) as app_url:
        # Warm the cache and the connection pool before measuring.
        run_wrk(f"{app_url}/gated", token, 1, arguments.connections)
        run_wrk(f"{app_url}/naive", token, 1, arguments.connections)

        for round_number in range(1, arguments.rounds + 1):
            for route in ROUTES:
                measurement = run_wrk(
                    f"{app_url}/{route}", token, arguments.seconds, arguments.connections
                )
                results[route].append(measurement)
                print(f"round {round_number} {route}: {measurement}", flush=True)

    _print_table(results, arguments)


def _print_table(results: dict[str, list[Measurement]], arguments: argparse.Namespace) -> None:
    median = {
        route: statistics.median(m.requests_per_second for m in measurements)
        for route, measurements in results.items()
    }
    print()
    print(
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(
        f"wrk -t1 -c{arguments.connections} -d{arguments.seconds}s, "
        f"{arguments.rounds} rounds, median round shown"
    )
    print()
    print("| route | requests/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|")
    for route, measurements in results.items():
        middle = sorted(measurements, key=lambda m: m.requests_per_second)[len(measurements) // 2]
        print(
            f"| {route} | {middle.requests_per_second:,.0f} | {middle.p50_ms:.2f} "
            f"| {middle.p99_ms:.2f} | {sum(m.errors for m in measurements)} |"
        )
    print()
    for route in ("gated", "gated-entitlements"):
        per_round = ", ".join(
            f"{measured.requests_per_second / bare.requests_per_second:.3f}"
            for measured, bare in zip(results[route], results["bare"], strict=True)
        )
        print(
            f"{route}/bare throughput: {median[route] / median['bare']:.3f} "
            f"(per round: {per_round})"
        )
    print(f"gated/naive throughput: {median['gated'] / median['naive']:.2f}")


if __name__ == "__main__":
    main()

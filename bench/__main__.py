"""``make bench`` / ``python -m bench``: every benchmark, tables on stdout, JSON under ``.bench/``.

Needs the local stack (``make stack-up``): Kafka on STOCKWATCH_KAFKA_BOOTSTRAP (127.0.0.1:9092)
and a MongoDB-protocol server on STOCKWATCH_MONGO_URI (mongodb://127.0.0.1:27017).

    python -m bench                                # the issue's sizes (15-25 minutes)
    python -m bench --only pipeline,latency       # a subset
    python -m bench --quick                       # small sizes, for development
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench.common import OUT_DIR, Section, machine_info, render, write_json

STEPS = ("kernel", "pipeline", "latency", "hotswap", "retrain", "state")


def _kernel(quick: bool, results: dict[str, Any]) -> Section | None:
    from bench import kernel

    kernel.main()  # prints its own tables and writes .bench/kernel.json
    return None


def _pipeline(quick: bool, results: dict[str, Any]) -> Section:
    from bench import pipeline

    return pipeline.run(n=50_000 if quick else 500_000, naive_n=1_000 if quick else 5_000)


def _latency(quick: bool, results: dict[str, Any]) -> Section:
    from bench import latency

    return latency.run(pipeline=results.get("pipeline"), seconds=8.0 if quick else 30.0)


def _hotswap(quick: bool, results: dict[str, Any]) -> Section:
    from bench import hotswap

    return hotswap.run(swaps=3 if quick else 10)


def _retrain(quick: bool, results: dict[str, Any]) -> Section:
    from bench import retrain

    return retrain.run(sizes=(10_000, 100_000) if quick else (10_000, 100_000, 1_000_000))


def _state(quick: bool, results: dict[str, Any]) -> Section:
    from bench import state

    return state.run(n=100_000 if quick else 1_000_000)


RUNNERS: dict[str, Callable[[bool, dict[str, Any]], Section | None]] = {
    "kernel": _kernel,
    "pipeline": _pipeline,
    "latency": _latency,
    "hotswap": _hotswap,
    "retrain": _retrain,
    "state": _state,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for development (not the issue's)")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in steps if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {','.join(STEPS)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = "python -m bench" + ("" if args.only == ",".join(STEPS) else f" --only {args.only}")
    command += " --quick" if args.quick else ""
    info = machine_info()
    print(
        f"# StockWatch benchmarks: `{command}`, {info['date']}, {info['cpus']} CPUs, load {info['loadavg']}"
    )
    results: dict[str, Any] = {}
    sections: list[Section] = []
    failed = []
    for step in steps:
        print(f"\n## {step}", flush=True)
        started = time.monotonic()
        try:
            section = RUNNERS[step](args.quick, results)
        except Exception as exc:  # one line, the stack in a file, and go on with the other benchmarks
            where = OUT_DIR / f"{step}.traceback.txt"
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            where.write_text(traceback.format_exc())
            print(f"bench: {step} failed: {type(exc).__name__}: {exc} (stack in {where})", flush=True)
            failed.append(step)
            continue
        if section is not None:
            results[step] = section.data
            sections.append(section)
            write_json(step, {"machine": info, "command": command, **section.data,
                              "checks": [c.__dict__ | {"passed": c.passed} for c in section.checks]})  # fmt: skip
            print("\n" + render(section), flush=True)
        print(f"  ({step} took {time.monotonic() - started:.0f} s)", flush=True)
    checks = [(s.title, c) for s in sections for c in s.checks]
    if checks:
        print("\n## Targets\n")
        print("| benchmark | figure | measured | target | |")
        print("|---|---|---|---|---|")
        for title, c in checks:
            row = c.row()
            print(f"| {title.split(' (')[0]} | {row[0]} | {row[1]} | {row[2]} | {row[3]} |")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

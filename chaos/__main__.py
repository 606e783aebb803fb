"""``python -m chaos [--quick] [--only a,b]`` (= ``make chaos``): the fault-injection suite.

Starts its own Kafka + FerretDB (``.stack/chaos``, ports 39092 / 39093 / 27039: never the shared
stack, since it kills them), runs every scenario with a time bound, prints one table row per
scenario (records sent / lost / duplicated, recovery seconds) and the checks of any that failed,
stops the stack, and exits 1 if any guarantee was violated.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial

from bench.common import markdown_table
from chaos.common import LOG_DIR, Ctx, Result, split_seconds
from chaos.kafka_io import close_clients
from chaos.stack import REPO, ChaosStack

Scenario = Callable[[Ctx], list[Result]]


def scenarios(quick: bool) -> list[tuple[str, Scenario]]:
    from chaos import attacks, crashes, group, hostile, retrain

    clients = ("kafka-python",) if quick else ("kafka-python", "confluent-kafka")
    kills: list[tuple[str, Scenario]] = [
        (f"consumer-kill:{d}:{c}", partial(crashes.consumer_kills, delivery=d, client=c))
        for c in clients
        for d in ("at-least-once", "exactly-once")
    ]
    return [
        *kills,
        (
            "broker-kill",
            lambda ctx: [crashes.broker_kill(ctx, delivery="at-least-once", client=c) for c in clients],
        ),
        ("failover", lambda ctx: [group.failover(ctx)]),
        ("split-brain", lambda ctx: [group.empty_store_start(ctx, attempts=2 if quick else 5)]),
        ("two-eos", lambda ctx: [group.two_exactly_once(ctx)]),
        ("mongo-kill", lambda ctx: [retrain.mongo_killed_during_retrain(ctx)]),
        ("poison", hostile.poison_pills),
        ("hostile", hostile.hostile_updates),
        ("models", lambda ctx: [attacks.tampered_models(ctx)]),
        ("control", attacks.control_attacks),
    ]


def row(r: Result) -> list[str]:
    recovery = "" if r.recovery_s is None else f"{r.recovery_s:.1f}"
    return [r.scenario, r.variant, f"{r.sent:,}", str(r.lost), str(r.duplicated), recovery,
            f"{r.seconds:.0f}", "PASS" if r.ok else "FAIL"]  # fmt: skip


def run_scenario(name: str, scenario: Scenario, ctx: Ctx) -> list[Result]:
    """One scenario's results, timed; one that cannot finish is a failed guarantee, not a crash of the
    suite (its check says why in one line, its stack goes to a file under the logs)."""
    t0 = time.monotonic()
    print(f"chaos: {name} ...", flush=True)
    try:
        got = scenario(ctx)
    except Exception as exc:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80]
        where = LOG_DIR / f"{ctx.prefix}-{slug}.traceback.txt"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        where.write_text(traceback.format_exc())
        check = f"FAILED: {type(exc).__name__}: {exc} (stack in {where.relative_to(REPO)})"
        got = [Result(name, "", ok=False, checks=[check])]
    finally:
        ctx.stop_all()
    split_seconds(got, t0, time.monotonic())
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer variants and repetitions (CI)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated name prefixes: consumer-kill, broker-kill, failover, split-brain, two-eos, "
        "mongo-kill, poison, hostile, models, control",
    )
    parser.add_argument("--keep-stack", action="store_true", help="leave the suite's stack running")
    args = parser.parse_args(argv)
    env = os.environ
    stack = ChaosStack(
        REPO / ".stack" / "chaos",
        kafka_port=int(env.get("CHAOS_KAFKA_PORT", "39092")),
        controller_port=int(env.get("CHAOS_CONTROLLER_PORT", "39093")),
        sasl_port=int(env.get("CHAOS_SASL_PORT", "39094")),
        mongo_port=int(env.get("CHAOS_MONGO_PORT", "27039")),
    )
    chosen = [
        (n, s) for n, s in scenarios(args.quick) if not args.only or n.startswith(tuple(args.only.split(",")))
    ]
    began = time.monotonic()
    print(f"chaos: starting the suite's own stack ({stack.bootstrap}, {stack.mongo_uri})", flush=True)
    try:
        stack.up()
    except subprocess.CalledProcessError:  # stack.sh said why (a port taken, a missing tool): one line more
        print("chaos: the suite's stack did not start; see the line above", file=sys.stderr)
        return 2
    ctx = Ctx(stack=stack, quick=args.quick)
    results: list[Result] = []
    try:
        for name, scenario in chosen:
            for r in run_scenario(name, scenario, ctx):
                results.append(r)
                print(r.progress(), flush=True)
    finally:
        ctx.stop_all()
        close_clients()
        if not args.keep_stack:
            stack.down()
    total = time.monotonic() - began
    header = ["scenario", "variant", "records sent", "lost", "duplicated", "recovery s", "seconds", "result"]
    print()
    print(f"### Fault injection ({'--quick' if args.quick else 'full'}), {total:.0f} s in all")
    print()
    print(markdown_table(header, [row(r) for r in results]))
    print()
    for r in results:
        mark = "PASS" if r.ok else "FAIL"
        print(f"* {mark} {r.scenario} ({r.variant}): " + "; ".join(r.checks))
    print(f"\nlogs of the services: {LOG_DIR.relative_to(REPO)}/{ctx.prefix}-*.log")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"\nchaos: {len(failed)} scenario(s) violated a guarantee", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the whole StockWatch path on the local stack, narrated, as an alerting team sees it.

1. seed a warehouse inventory into MongoDB and write the same snapshot to ``items.jsonl``;
2. ``stockwatch train --items items.jsonl`` (the ``default`` detector: each update judged as a
   change of its item, data-quality rules beside the model, an alert budget); start
   ``stockwatch retrain-worker`` and ``stockwatch consume`` (per-item state, seeded from MongoDB);
3. publish change events of known items (sales, restocks, repricing, as partial updates) with
   planted reporting errors and a few malformed messages;
4. print every alert as it arrives: severity, calibrated 0-100 score, kind, rules, reason;
5. ``stockwatch ctl retrain``: a new model version is hot-swapped in, mid-stream;
6. stop both services with SIGTERM and check that they exit cleanly.

It passes (exit 0) when every planted error is caught, every malformed message is dead-lettered,
the retrained model scores the later updates without a restart and both services exit with 0
(and, with the default detector, its alerts on normal updates stay within 2 per 100).
``--detector seed`` runs the original design instead (missing numbers filled with its defaults:
on partial change events nearly every update is flagged; the unknown item's is no dead letter). ``--quick`` (the integration test) runs the same story on fewer items
and waits only until what it waits for has arrived.

Every run uses its own topics (``demo.<run>.*``) and model dir (``.demo/`` or ``--work``), so runs
never see each other's data; ``--quick`` also uses a database of its own, dropped at the end.
Settings not overridden here come from the usual sources.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from config.settings import Settings
from consumer.adapters.kafka import TopicTail, ensure_topics, publish_raw
from consumer.adapters.kafka.connect import Broker
from consumer.adapters.mongo import drop_database, replace_collection
from scripts.demo_data import MALFORMED, dead_letters_expected, normal_item, updates
from scripts.demo_io import Services, drain, read_dead_letters, retrain_summary, say, swapped_in, wait_for

ROOT = Path(__file__).resolve().parent.parent
N_INVENTORY = 3000
DEMO_DB = "stockwatch_demo"


@dataclass(frozen=True, slots=True)
class Plan:
    """How much the demo publishes and how long it watches the anomaly topic."""

    inventory: int = N_INVENTORY
    updates: int = 800
    watch_s: tuple[float, float] = (12.0, 10.0)  # before and after the retrain
    until_caught: bool = False  # stop watching once every planted anomaly so far has arrived


FULL = Plan()
QUICK = Plan(inventory=1000, updates=200, watch_s=(60.0, 60.0), until_caught=True)


def demo_env(run: str, work: Path, db: str, detector: str) -> tuple[dict[str, str], dict[str, str]]:
    """Topics and the services' environment for one run."""
    topics = {
        "input": f"demo.{run}.stock-updates",
        "anomaly": f"demo.{run}.anomalies",
        "dlq": f"demo.{run}.stock-updates.dlq",
        "control": f"demo.{run}.control",
        "status": f"demo.{run}.status",
    }
    env = {
        **os.environ,
        "STOCKWATCH_DETECTOR": detector,  # what `train` and the retrain worker fit
        "STOCKWATCH_INPUT_TOPIC": topics["input"],
        "STOCKWATCH_ANOMALY_TOPIC": topics["anomaly"],
        "STOCKWATCH_DLQ_TOPIC": topics["dlq"],
        "STOCKWATCH_CONTROL_TOPIC": topics["control"],
        "STOCKWATCH_STATUS_TOPIC": topics["status"],
        "STOCKWATCH_GROUP_ID": f"demo-{run}",
        "STOCKWATCH_CONTROL_GROUP_ID": f"demo-{run}-workers",
        "STOCKWATCH_MONGO_DB": db,
        "STOCKWATCH_MODEL_DIR": str(work / "models"),
        "STOCKWATCH_CONTROL_KEY": secrets.token_hex(16),
        "STOCKWATCH_MODEL_POLL_INTERVAL_S": "0.5",
        "STOCKWATCH_RETRAIN_COOLDOWN_S": "0",
        "STOCKWATCH_HTTP_PORT": "0",
        "STOCKWATCH_WORKER_HTTP_PORT": "0",
    }
    return topics, env


def publish_updates(
    bootstrap: Broker, topic: str, batch: list[dict[str, Any]], labels: dict[str, str]
) -> None:
    """Publish ``batch`` keyed by item id; remember which events were planted (and what they are)."""
    labels.update({u["event_id"]: u.pop("_label") for u in batch if "_label" in u})
    publish_raw(bootstrap, topic, [(u["item_id"].encode(), orjson.dumps(u)) for u in batch])


@dataclass(frozen=True, slots=True)
class Run:
    """One run's names: id, database, work dir, topics and the detector it trains."""

    id: str
    db: str
    work: Path
    topics: Mapping[str, str]
    detector: str = "default"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer items, no fixed waits (the test)")
    parser.add_argument("--work", type=Path, default=ROOT / ".demo", help="model dir and logs")
    parser.add_argument("--detector", choices=("default", "seed"), default="default",
                        help="seed: the original design's behaviour (default: the change detector)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = secrets.token_hex(3)
    db = f"{DEMO_DB}_{run_id}" if args.quick else DEMO_DB
    base = Settings()
    work = args.work.resolve()
    for previous in ("models", "logs"):  # only what a previous run left here
        shutil.rmtree(work / previous, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    (work / "models").mkdir()
    topics, env = demo_env(run_id, work, db, args.detector)
    services = Services(env, work / "logs")
    try:
        return tell(
            QUICK if args.quick else FULL, base, Run(run_id, db, work, topics, args.detector), services
        )
    finally:
        services.stop_all()  # a no-op after a whole story; stops them when a wait gave up
        if args.quick:
            drop_database(base.mongo_uri, db)


def train(services: Services, items: Path) -> dict[str, Any]:
    """``stockwatch train --items`` (the detector STOCKWATCH_DETECTOR names); its summary line."""
    trained = services.run("train", "--items", str(items))
    if trained.returncode != 0:
        raise SystemExit(f"demo: stockwatch train failed: {trained.stderr.decode(errors='replace')[-2000:]}")
    return dict(orjson.loads(trained.stdout))


def tell(plan: Plan, base: Settings, run: Run, services: Services) -> int:
    """The demo's story (see the module docstring); returns its exit status."""
    rng = np.random.default_rng(2026)
    db, work, topics = run.db, run.work, run.topics
    bootstrap = base.kafka  # the address, security settings and client properties
    say(f"== StockWatch demo (run {run.id}): Kafka {base.kafka_bootstrap}, MongoDB {base.mongo.safe_uri}")
    inventory = [normal_item(rng, f"sku-{i:05d}") for i in range(plan.inventory)]
    count = replace_collection(base.mongo_uri, db, base.mongo_collection, inventory)
    items = work / "items.jsonl"
    items.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in inventory))
    say(f"1. seeded {count} items into {db}.{base.mongo_collection} (the same snapshot in {items})")
    ensure_topics(bootstrap, topics.values())
    summary = train(services, items)
    first = str(summary["version"])
    budget = f", alert budget {summary['alert_budget_per_1000']} model alerts per 1,000 normal updates" if run.detector == "default" else f", contamination {summary.get('params', {}).get('contamination')}"  # fmt: skip
    say(f"2. stockwatch train --items {items.name}: model {first} ({run.detector} detector{budget})")
    services.start("retrain-worker", "retrain-worker")
    services.start("consume", "consume")
    current = work / "models" / "CURRENT"

    state = {d["item_id"]: dict(d) for d in inventory}  # the items' true states, advanced by the stream
    labels: dict[str, str] = {}
    planted: set[str] = set()  # items with a planted error: the next one goes to another item
    batch = updates(rng, plan.updates, "a", state=state, planted=planted)
    publish_updates(bootstrap, topics["input"], batch, labels)
    publish_raw(bootstrap, topics["input"], list(MALFORMED))
    say(f"3. published {len(batch)} change events of known items (sales, restocks, repricing; "
        f"{len(labels)} planted reporting errors) and {len(MALFORMED)} malformed messages")  # fmt: skip
    say("4. the alerts, as they arrive (item, severity, 0-100 severity score, kind, rules, first reason):")
    events: list[dict[str, Any]] = []
    tail = TopicTail(bootstrap, topics["anomaly"])
    drain(tail, plan.watch_s[0], events, labels, until=len(labels) if plan.until_caught else 0)

    say("5. stockwatch ctl retrain: a signed command on the control topic")
    ctl = services.run("ctl", "retrain", "--timeout", "120", timeout=180)
    say(f"   {retrain_summary(ctl.stdout)}")
    wait_for("the new model", lambda: current.read_text().strip() != first, 60)
    second = current.read_text().strip()
    wait_for(f"the consumer to swap in {second}", swapped_in(work / "logs" / "consume.log", second), 60)
    more = updates(rng, plan.updates // 4, "b", state=state, planted=planted)
    publish_updates(bootstrap, topics["input"], more, labels)
    say(f"   published {len(more)} more change events, now decided by {second}:")
    drain(tail, plan.watch_s[1], events, labels, until=len(labels) if plan.until_caught else 0)
    tail.close()

    dead = read_dead_letters(bootstrap, topics["dlq"], dead_letters_expected(run.detector))
    say("   dead letters (original bytes kept, reason in the headers):")
    say("".join(f"     - {reason}\n" for reason in dead).rstrip())
    codes = services.stop_all()
    return verdict(run, events, labels, len(batch) + len(more), dead, codes, second, detectors(services))


def detectors(services: Services) -> dict[str, str]:
    """Model version -> the detector it is (``stockwatch models list --json``)."""
    listed = services.run("models", "list", "--json")
    rows = orjson.loads(listed.stdout) if listed.returncode == 0 else []
    return {str(r["version"]): str(r.get("detector") or "?") for r in rows}


def verdict(run: Run, events: list[dict[str, Any]], labels: Mapping[str, str], n: int, dead: list[str],  # noqa: PLR0917
            codes: Mapping[str, int], second: str, kinds: Mapping[str, str]) -> int:  # fmt: skip
    """The closing summary and the pass check."""
    caught = {e.get("event_id") for e in events} & set(labels)
    versions = sorted({e["model_version"] for e in events})
    resolved = [e for e in events if e.get("status") == "resolved"]  # an episode closed: no alert
    normal = [e for e in events if e.get("event_id") not in labels and e.get("status") != "resolved"]
    first_model = [e for e in normal if e["model_version"] == min(versions, default="")]
    seen = ", ".join(f"{v} ({kinds.get(v, '?')})" for v in versions)
    say(
        f"6. stopped with SIGTERM: exit codes {dict(codes)}\n"
        f"== {len(events)} anomaly events for {n} updates ({1000 * len(events) / max(n, 1):.0f} per 1,000); "
        f"planted anomalies caught: {len(caught)}/{len(labels)}; alerts on normal updates: {len(normal)}; "
        f"episodes resolved: {len(resolved)}; "
        f"model versions seen: {seen}; "
        f"dead letters: {len(dead)}/{dead_letters_expected(run.detector)}. Logs: {run.work / 'logs'}"
    )
    if run.detector == "default":
        say("   The seed's behaviour (the original design: missing numbers filled with its defaults, "
            "one state in ten flagged): python -m scripts.demo --detector seed, or STOCKWATCH_DETECTOR=seed "
            "/ stockwatch train --detector seed.")  # fmt: skip
    checks = [
        ("a service did not exit with 0", all(c == 0 for c in codes.values())),
        ("a planted anomaly was missed", len(caught) == len(labels)),
        ("a malformed message was not dead-lettered", len(dead) == dead_letters_expected(run.detector)),
        (f"no event was decided by the retrained model {second}", second in versions),
    ]
    if run.detector == "default":  # its alert budget: few alerts on normal updates
        checks.append(("the default detector alerted on more than 2 in 100 normal updates",
                       100 * len(first_model) <= 2 * n))  # fmt: skip
    failed = [what for what, ok in checks if not ok]
    say(f"== FAIL: {'; '.join(failed)}" if failed else "== PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

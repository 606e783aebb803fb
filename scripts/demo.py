"""``make demo``: the whole StockWatch path on the local stack, narrated.

1. seed a warehouse inventory into MongoDB;
2. start ``stockwatch retrain-worker`` (it trains at start-up when the store has no model) and
   ``stockwatch consume`` (it waits, partitions paused, until a model is published);
3. publish stock updates with planted anomalies and a few malformed messages;
4. print the anomaly events (and dead letters) as they arrive;
5. ``stockwatch ctl retrain``: a new model version is hot-swapped in, mid-stream;
6. stop both services with SIGTERM and check that they exit cleanly.

It passes (exit 0) when every planted anomaly is caught, every malformed message is dead-lettered,
the retrained model scores the later updates without a restart and both services exit with 0.
``--quick`` (the integration test) runs the same story on fewer items and waits only until
what it waits for has arrived.

Every run uses its own topics (``demo.<run>.*``) and model dir (``.demo/`` or ``--work``), so runs
never see each other's data; ``--quick`` also uses a database of its own, dropped at the end.
Settings not overridden here come from the usual sources.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from config.settings import Settings
from consumer.adapters.kafka import TopicTail, ensure_topics, publish_raw
from consumer.adapters.mongo import drop_database, replace_collection
from consumer.wire.events import DLQ_HEADER_ERROR, DLQ_HEADER_REASON
from scripts.demo_data import MALFORMED, normal_item, updates

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


def say(text: str) -> None:
    print(text, flush=True)


class Services:
    """The two real services as subprocesses of the ``stockwatch`` CLI."""

    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self.env, self.logs = dict(env), logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "consumer.cli", *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, timeout=timeout, check=False)

    def stop_all(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: gave up waiting for {what} after {timeout:.0f}s (logs in .demo/)")
        time.sleep(0.2)


def show_event(event: dict[str, Any], labels: Mapping[str, str]) -> str:
    mark = f"  ← planted: {labels[event['item_id']]}" if event["item_id"] in labels else ""
    reason = event["reasons"][0] if event["reasons"] else ""
    return (
        f"  {event['item_id']:<14} score {event['score']:+.4f}  {event['severity']:<8} "
        f"{event['model_version']}  {reason}{mark}"
    )


def drain(
    tail: TopicTail,
    seconds: float,
    sink: list[dict[str, Any]],
    labels: Mapping[str, str],
    *,
    until_caught: bool = False,
) -> None:
    """Print anomaly events as they arrive for ``seconds``: planted ones and medium severity or worse.

    With the seed's contamination of 0.1 the model flags about one normal update in ten at low
    severity; those are counted, not printed, to keep the story readable. ``until_caught`` stops
    as soon as every planted item in ``labels`` has had its event.
    """
    quiet = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _key, value, _headers in tail.poll(0.3):
            event = orjson.loads(value)
            sink.append(event)
            if event["item_id"] in labels or event["severity"] not in ("none", "low"):
                say(show_event(event, labels))
            else:
                quiet += 1
        if until_caught and set(labels) <= {e["item_id"] for e in sink}:
            break
    say(f"  (+ {quiet} low-severity anomaly events not shown)")


def demo_env(run: str, work: Path, db: str) -> tuple[dict[str, str], dict[str, str]]:
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


def publish_updates(bootstrap: str, topic: str, batch: list[dict[str, Any]], labels: dict[str, str]) -> None:
    """Publish ``batch`` keyed by item id; remember which items were planted (and why)."""
    labels.update({u["item_id"]: u.pop("_label") for u in batch if "_label" in u})
    publish_raw(bootstrap, topic, [(u["item_id"].encode(), orjson.dumps(u)) for u in batch])


def read_dead_letters(bootstrap: str, topic: str, expect: int) -> list[str]:
    """``reason: error`` of each dead letter (waits up to 10 s for ``expect`` of them)."""
    dlq = TopicTail(bootstrap, topic)
    dead: list[str] = []
    deadline = time.monotonic() + 10
    try:
        while len(dead) < expect and time.monotonic() < deadline:
            dead += [
                f"{h[DLQ_HEADER_REASON].decode()}: {h[DLQ_HEADER_ERROR].decode()}"
                for _k, _v, h in dlq.poll(0.5)
            ]
    finally:
        dlq.close()
    return dead


def wait_for_status(bootstrap: str, topic: str, kind: str, timeout: float) -> None:
    """Wait until the status topic carries a message of type ``kind`` (read from its beginning)."""
    status = TopicTail(bootstrap, topic)
    try:
        wait_for(
            f"a {kind} status message",
            lambda: any(orjson.loads(v).get("type") == kind for _k, v, _h in status.poll(0.5)),
            timeout,
        )
    finally:
        status.close()


def retrain_summary(stdout: bytes) -> str:
    """One line from ``stockwatch ctl retrain``'s final acknowledgement."""
    lines = [orjson.loads(line) for line in stdout.splitlines() if line.startswith(b"{")]
    final = lines[-1] if lines else {}
    result = final.get("result", {})
    snapshot = result.get("snapshot", {})
    return (
        f"{final.get('status', '?')}: {result.get('status', '?')} version {result.get('version')}, "
        f"trained on {snapshot.get('usable', '?')} items read in {snapshot.get('seconds', '?')} s, "
        f"gate passed: {result.get('gate', {}).get('passed')}"
    )


def swapped_in(log: Path, version: str) -> Callable[[], bool]:
    """Whether the consumer's log (JSON lines) has a line about swapping ``version`` in."""

    def check() -> bool:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return any("swap" in line and version in line for line in lines)

    return check


@dataclass(frozen=True, slots=True)
class Run:
    """One run's names: id, database, work dir and topics."""

    id: str
    db: str
    work: Path
    topics: Mapping[str, str]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer items, no fixed waits (the test)")
    parser.add_argument("--work", type=Path, default=ROOT / ".demo", help="model dir and logs")
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
    topics, env = demo_env(run_id, work, db)
    services = Services(env, work / "logs")
    try:
        return tell(QUICK if args.quick else FULL, base, Run(run_id, db, work, topics), services)
    finally:
        services.stop_all()  # a no-op after a whole story; stops them when a wait gave up
        if args.quick:
            drop_database(base.mongo_uri, db)


def tell(plan: Plan, base: Settings, run: Run, services: Services) -> int:
    """The demo's story (see the module docstring); returns its exit status."""
    rng = np.random.default_rng(2026)
    db, work, topics = run.db, run.work, run.topics
    bootstrap = base.kafka_bootstrap
    say(f"== StockWatch demo (run {run.id}): Kafka {bootstrap}, MongoDB {base.mongo_uri}")
    inventory = [normal_item(rng, f"sku-{i:05d}") for i in range(plan.inventory)]
    count = replace_collection(base.mongo_uri, db, base.mongo_collection, inventory)
    say(f"1. seeded {count} items into {db}.{base.mongo_collection}")
    ensure_topics(bootstrap, topics.values())

    services.start("retrain-worker", "retrain-worker")
    services.start("consume", "consume")
    current = work / "models" / "CURRENT"
    wait_for("the start-up model", current.exists, 180)
    first = current.read_text().strip()
    say(f"2. the retrain worker trained model {first} at start-up; the consumer picked it up")

    labels: dict[str, str] = {}
    batch = updates(rng, plan.updates, "a", inventory=plan.inventory)
    publish_updates(bootstrap, topics["input"], batch, labels)
    publish_raw(bootstrap, topics["input"], list(MALFORMED))
    say(f"3. published {len(batch)} updates ({len(labels)} planted anomalies) and {len(MALFORMED)} malformed")
    say("4. anomaly events as they arrive:")
    events: list[dict[str, Any]] = []
    tail = TopicTail(bootstrap, topics["anomaly"])
    drain(tail, plan.watch_s[0], events, labels, until_caught=plan.until_caught)

    # The start-up run writes its report after publishing; a retrain sent before it ends is coalesced.
    wait_for_status(bootstrap, topics["status"], "retrain_finished", 120)
    say("5. stockwatch ctl retrain: a signed command on the control topic")
    ctl = services.run("ctl", "retrain", "--timeout", "120", timeout=180)
    say(f"   {retrain_summary(ctl.stdout)}")
    wait_for("the new model", lambda: current.read_text().strip() != first, 60)
    second = current.read_text().strip()
    wait_for(f"the consumer to swap in {second}", swapped_in(work / "logs" / "consume.log", second), 60)
    more = updates(rng, plan.updates // 4, "b", inventory=plan.inventory)
    publish_updates(bootstrap, topics["input"], more, labels)
    say(f"   published {len(more)} more updates, now scored by {second}:")
    drain(tail, plan.watch_s[1], events, labels, until_caught=plan.until_caught)
    tail.close()

    dead = read_dead_letters(bootstrap, topics["dlq"], len(MALFORMED))
    say("   dead letters (original bytes kept, reason in the headers):")
    say("".join(f"     - {reason}\n" for reason in dead).rstrip())

    codes = services.stop_all()
    caught = {e["item_id"] for e in events} & set(labels)
    versions = sorted({e["model_version"] for e in events})
    say(
        f"6. stopped with SIGTERM: exit codes {codes}\n"
        f"== {len(events)} anomaly events for {len(batch) + len(more)} updates; planted anomalies caught: "
        f"{len(caught)}/{len(labels)}; model versions seen: {', '.join(versions)}; "
        f"dead letters: {len(dead)}/{len(MALFORMED)}. Logs: {work / 'logs'}"
    )
    failed = [
        what
        for what, ok in (
            ("a service did not exit with 0", all(c == 0 for c in codes.values())),
            ("a planted anomaly was missed", len(caught) == len(labels)),
            ("a malformed message was not dead-lettered", len(dead) == len(MALFORMED)),
            (f"no event was scored by the retrained model {second}", second in versions),
        )
        if not ok
    ]
    say(f"== FAIL: {'; '.join(failed)}" if failed else "== PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

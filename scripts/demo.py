"""``make demo``: the whole StockWatch path on the local stack, narrated.

1. seed a warehouse inventory into MongoDB;
2. start ``stockwatch retrain-worker`` (it trains at start-up when the store has no model) and
   ``stockwatch consume`` (it waits, partitions paused, until a model is published);
3. publish stock updates with planted anomalies and a few malformed messages;
4. print the anomaly events (and dead letters) as they arrive;
5. ``stockwatch ctl retrain``: a new model version is hot-swapped in, mid-stream;
6. stop both services with SIGTERM and check that they exit cleanly.

Every run uses its own topics (``demo.<run>.*``), database and model dir (``.demo/``), so runs never
see each other's data. Settings not overridden here come from the usual sources.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from config.settings import Settings
from consumer.adapters.kafka import TopicTail, ensure_topics, publish_raw
from consumer.adapters.mongo import replace_collection
from consumer.wire.events import DLQ_HEADER_ERROR, DLQ_HEADER_REASON

ROOT = Path(__file__).resolve().parent.parent
N_INVENTORY = 3000
N_UPDATES = 800
DEMO_DB = "stockwatch_demo"
CATEGORIES = ((20, 80, 4.0), (50, 200, 12.0), (100, 400, 30.0), (10, 60, 180.0))  # min, max, price


def say(text: str) -> None:
    print(text, flush=True)


def normal_item(rng: np.random.Generator, item_id: str) -> dict[str, Any]:
    """A believable item: stock inside its min-max band, a price around its category's."""
    lo, hi, price = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    return {
        "item_id": item_id,
        "stock_quantity": int(rng.integers(lo, hi + 1)),
        "min_stock_level": lo,
        "max_stock_level": hi,
        "price": round(float(price * rng.uniform(0.8, 1.2)), 2),
    }


PLANTED: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "stock 50,000 in a 50-200 band",
        {"stock_quantity": 50_000, "min_stock_level": 50, "max_stock_level": 200},
    ),
    ("negative stock", {"stock_quantity": -40, "min_stock_level": 50, "max_stock_level": 200}),
    ("price typo x1000", {"price": 12_000.0, "min_stock_level": 50, "max_stock_level": 200}),
    ("min level above max", {"min_stock_level": 900, "max_stock_level": 200, "stock_quantity": 150}),
    ("empty shelf", {"stock_quantity": 0, "min_stock_level": 100, "max_stock_level": 400, "price": 30.0}),
)
MALFORMED: tuple[tuple[bytes | None, bytes], ...] = (
    (b"sku-broken-1", b'{"item_id": "sku-broken-1", "stock_quantity": '),  # truncated JSON
    (b"sku-broken-2", b'{"item_id": "sku-broken-2", "stock_quantity": "NaN"}'),
    (None, b'{"stock_quantity": 10, "min_stock_level": 1}'),  # no item id
)


def updates(
    rng: np.random.Generator, count: int, tag: str, *, planted_every: int = 40
) -> list[dict[str, Any]]:
    """``count`` updates of known items, one planted anomaly every ``planted_every``."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        item = normal_item(rng, f"sku-{int(rng.integers(N_INVENTORY)):05d}")
        item["event_id"] = f"{tag}{i}"
        if i % planted_every == planted_every // 2:
            label, fields = PLANTED[(i // planted_every) % len(PLANTED)]
            item.update({"stock_quantity": 120, "price": 12.0, **fields})
            item["item_id"] = f"planted-{tag}{i}"
            item["_label"] = label
        out.append(item)
    return out


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


def drain(tail: TopicTail, seconds: float, sink: list[dict[str, Any]], labels: Mapping[str, str]) -> None:
    """Print anomaly events as they arrive for ``seconds``: planted ones and medium severity or worse.

    With the seed's contamination of 0.1 the model flags about one normal update in ten at low
    severity; those are counted, not printed, to keep the story readable.
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
    say(f"  (+ {quiet} low-severity anomaly events not shown)")


def demo_env(run: str, work: Path) -> tuple[dict[str, str], dict[str, str]]:
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
        "STOCKWATCH_MONGO_DB": DEMO_DB,
        "STOCKWATCH_MODEL_DIR": str(work / "models"),
        "STOCKWATCH_CONTROL_KEY": secrets.token_hex(16),
        "STOCKWATCH_MODEL_POLL_INTERVAL_S": "0.5",
        "STOCKWATCH_RETRAIN_COOLDOWN_S": "0",
        "STOCKWATCH_HTTP_PORT": "0",
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


def main() -> int:
    run = secrets.token_hex(3)
    base = Settings()
    work = ROOT / ".demo"
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    topics, env = demo_env(run, work)
    bootstrap = base.kafka_bootstrap
    rng = np.random.default_rng(2026)

    say(f"== StockWatch demo (run {run}): Kafka {bootstrap}, MongoDB {base.mongo_uri}")
    inventory = [normal_item(rng, f"sku-{i:05d}") for i in range(N_INVENTORY)]
    count = replace_collection(base.mongo_uri, DEMO_DB, base.mongo_collection, inventory)
    say(f"1. seeded {count} items into {DEMO_DB}.{base.mongo_collection}")
    ensure_topics(bootstrap, topics.values())

    services = Services(env, work / "logs")
    services.start("retrain-worker", "retrain-worker")
    services.start("consume", "consume")
    current = work / "models" / "CURRENT"
    wait_for("the start-up model", current.exists, 180)
    first = current.read_text().strip()
    say(f"2. the retrain worker trained model {first} at start-up; the consumer picked it up")

    labels: dict[str, str] = {}
    batch = updates(rng, N_UPDATES, "a")
    publish_updates(bootstrap, topics["input"], batch, labels)
    publish_raw(bootstrap, topics["input"], list(MALFORMED))
    say(f"3. published {len(batch)} updates ({len(labels)} planted anomalies) and {len(MALFORMED)} malformed")
    say("4. anomaly events as they arrive:")
    events: list[dict[str, Any]] = []
    tail = TopicTail(bootstrap, topics["anomaly"])
    drain(tail, 12, events, labels)

    say("5. stockwatch ctl retrain: a signed command on the control topic")
    ctl = services.run("ctl", "retrain", "--timeout", "120", timeout=180)
    say(f"   {retrain_summary(ctl.stdout)}")
    wait_for("the new model", lambda: current.read_text().strip() != first, 60)
    more = updates(rng, N_UPDATES // 4, "b")
    publish_updates(bootstrap, topics["input"], more, labels)
    say(f"   published {len(more)} more updates, now scored by {current.read_text().strip()}:")
    drain(tail, 10, events, labels)
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
        f"dead letters: {len(dead)}/{len(MALFORMED)}. Logs: .demo/logs/"
    )
    ok = all(c == 0 for c in codes.values()) and len(caught) == len(labels) and len(dead) == len(MALFORMED)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

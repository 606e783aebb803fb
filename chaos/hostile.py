"""Hostile input: poison pills and a corpus of nasty stock updates for ``stockwatch consume``.

* a 5 MB update produced gzip-compressed (the broker takes it; its uncompressed dead letter is
  refused): a reduced dead letter, later records and the other partition scored, commits advance;
* the Mongo audit on with Mongo unreachable: outputs go out, commits advance;
* the corpus (truncated JSON, deep nesting, huge numbers, NaN strings, binary, empty, null key,
  oversize, ...): every record decided or dead-lettered, every invalid one dead-lettered, the
  service alive and healthy.
"""

from __future__ import annotations

import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from chaos.common import Ctx, Result, free_port, publish_model, terminate, wait_until
from chaos.kafka_io import all_committed, produce_all, read_all, service_topics, tally, warm_up

GOOD = {"stock_quantity": 100, "min_stock_level": 20, "max_stock_level": 300, "price": 9.5}


def _good(item: str, **extra: Any) -> bytes:
    return orjson.dumps({"item_id": item, **GOOD, **extra})


def corpus() -> list[tuple[str, bytes | None, bytes | None, bool]]:
    """(name, key, value, must be dead-lettered) of every hostile update."""
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    return [
        ("empty value", b"k-empty", b"", True),
        ("null value (tombstone)", b"k-null", None, True),
        ("truncated JSON", b"k-trunc", _good("sku-t")[:25], True),
        ("5,000-level nesting", b"k-deep", deep, True),
        (
            "300-level nesting inside an item",
            b"k-deep2",
            _good("sku-d")[:-1] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}",
            False,
        ),
        ("NaN literal", b"k-nan", b'{"item_id":"sku-n","stock_quantity":NaN}', True),
        ("NaN string", b"k-nans", _good("sku-ns", price="NaN"), True),
        ("Infinity string", b"k-inf", _good("sku-inf", stock_quantity="Infinity"), True),
        ("1e308 quantity", b"k-big", _good("sku-big", stock_quantity=1e308), False),
        (
            "400-digit integer",
            b"k-bigint",
            b'{"item_id":"sku-bi","stock_quantity":' + b"9" * 400 + b"}",
            True,
        ),
        ("boolean quantity", b"k-bool", _good("sku-b", stock_quantity=True), True),
        ("random binary", b"k-bin", bytes(range(256)) * 4, True),
        ("invalid UTF-8", b"k-utf", b'{"item_id":"\xff\xfe","price":1}', True),
        ("lone surrogate escape", b"k-sur", b'{"item_id":"\\ud800","price":1}', False),
        ("JSON array", b"k-arr", b"[1,2,3]", True),
        ("JSON string", b"k-str", b'"sku-1"', True),
        ("JSON null", b"k-jnull", b"null", True),
        ("no item id", b"k-noid", orjson.dumps(GOOD), True),
        (
            "10,000 extra fields",
            b"k-wide",
            orjson.dumps({"item_id": "sku-w", **GOOD, **{f"f{i}": i for i in range(10_000)}}),
            False,
        ),
        ("100 KB item id", b"k-longid", _good("s" * 100_000), False),
        ("1.5 MB value (over max_message_bytes)", b"k-over", _good("sku-o", pad="x" * 1_500_000), True),
        ("null key, valid value", None, _good("sku-nk"), False),
        ("100 KB key, valid value", b"k" * 100_000, _good("sku-lk"), False),
    ]


def _raw_producer(bootstrap: str, **extra: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20, **extra)


def _dead_letters(bootstrap: str, topic: str) -> dict[tuple[int, int], dict[str, bytes]]:
    out = {}
    for r in read_all(bootstrap, topic, committed_only=False):
        headers = {k: v for k, v in r.headers or []}
        out[(int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))] = headers
    return out


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _finish(ctx: Ctx, res: Result, topics: dict[str, str], proc: Any, group: str, *, eos: bool) -> None:
    res.check(
        wait_until(lambda: all_committed(ctx.bootstrap, group, topics["input"]), 60), "every offset committed"
    )
    res.check(proc.poll() is None, "the service kept running")
    res.check(terminate(proc) == 0, "SIGTERM exits 0")
    t = tally(ctx.bootstrap, topics, committed_only=eos)
    res.sent, res.lost, res.duplicated = t.sent, t.lost, t.duplicated
    res.check(t.lost == 0, "0 lost (every record decided or dead-lettered)")
    if eos:
        res.check(t.duplicated == 0, "0 duplicated (read_committed)")


def compressed_oversize(ctx: Ctx, *, delivery: str, client: str) -> Result:
    res = Result("poison: 5 MB gzip update", f"{delivery}, {client}")
    topics = service_topics(ctx, partitions=2)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        publish_model(model_dir)
        settings = ctx.consume_settings(topics, model_dir, delivery=delivery, kafka_client=client)
        if delivery == "exactly-once":
            settings["transactional_id"] = topics["input"] + ".tx"
        proc = ctx.spawn(["consume"], settings, f"gzip-{delivery}-{client}")
        res.check(warm_up(ctx.bootstrap, topics["input"], settings["group_id"]), "the consumer is up")
        producer = _raw_producer(ctx.bootstrap, compression_type="gzip")
        poison = producer.send(
            topics["input"], value=_good("sku-poison", pad="p" * (5 << 20)), key=b"poison", partition=0
        )
        at = poison.get(timeout=60)
        producer.close(timeout=10)
        produce_all(ctx.bootstrap, topics["input"], 2000)
        _finish(ctx, res, topics, proc, settings["group_id"], eos=delivery == "exactly-once")
    headers = _dead_letters(ctx.bootstrap, topics["dlq"]).get((at.partition, at.offset), {})
    res.check(
        b"value" in headers.get("dlq.truncated", b""),
        "the poison was dead-lettered reduced (dlq.truncated: value)",
    )
    return res


def audit_mongo_down(ctx: Ctx) -> Result:
    res = Result("poison: audit on, Mongo down", "at-least-once, kafka-python")
    topics = service_topics(ctx, partitions=2)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        publish_model(model_dir)
        nowhere = f"mongodb://127.0.0.1:{free_port()}"  # nothing listens there
        settings = ctx.consume_settings(topics, model_dir, audit_anomalies="true", mongo_uri=nowhere)
        proc = ctx.spawn(["consume"], settings, "audit-down")
        res.check(warm_up(ctx.bootstrap, topics["input"], settings["group_id"]), "the consumer is up")
        produce_all(ctx.bootstrap, topics["input"], 3000)
        _finish(ctx, res, topics, proc, settings["group_id"], eos=False)
    anomalies = len(read_all(ctx.bootstrap, topics["anomalies"], committed_only=False))
    res.check(anomalies > 0, f"anomaly events published ({anomalies})")
    return res


def poison_pills(ctx: Ctx) -> list[Result]:
    clients = ("kafka-python",) if ctx.quick else ("kafka-python", "confluent-kafka")
    out = [
        compressed_oversize(ctx, delivery=d, client=c)
        for c in clients
        for d in ("at-least-once", "exactly-once")
    ]
    return [*out, audit_mongo_down(ctx)]


def hostile_updates(ctx: Ctx) -> list[Result]:
    clients = ("kafka-python",) if ctx.quick else ("kafka-python", "confluent-kafka")
    return [_corpus_run(ctx, client) for client in clients]


def _corpus_run(ctx: Ctx, client: str) -> Result:
    items = corpus()
    res = Result("hostile-update corpus", f"{len(items)} kinds, at-least-once, {client}")
    topics = service_topics(ctx, partitions=2)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        publish_model(model_dir)
        settings = ctx.consume_settings(topics, model_dir, kafka_client=client)
        proc = ctx.spawn(["consume"], settings, f"corpus-{client}")
        res.check(warm_up(ctx.bootstrap, topics["input"], settings["group_id"]), "the consumer is up")
        producer = _raw_producer(ctx.bootstrap)
        sent = []
        for i, (name, key, value, must) in enumerate(items):
            headers = [("h-bin", bytes(range(256))), ("h-empty", b"")] if i % 2 else []
            future = producer.send(topics["input"], key=key, value=value, headers=headers, partition=i % 2)
            sent.append((name, future, must))
        producer.flush(timeout=60)
        coords = [(name, f.get(timeout=10), must) for name, f, must in sent]
        producer.close(timeout=10)
        produce_all(ctx.bootstrap, topics["input"], 1000)  # and then ordinary updates
        res.check(wait_until(lambda: _healthy(settings["http_port"]), 30), "/healthz answers 200")
        _finish(ctx, res, topics, proc, settings["group_id"], eos=False)
    dead = _dead_letters(ctx.bootstrap, topics["dlq"])
    missing = [name for name, md, must in coords if must and (md.partition, md.offset) not in dead]
    res.check(not missing, f"every invalid update dead-lettered (missing: {missing or 'none'})")
    return res

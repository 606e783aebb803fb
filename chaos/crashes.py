"""Process and broker crashes: kill -9 of ``stockwatch consume`` and of the Kafka broker mid-stream.

* consumer kill -9, restarted at once: at-least-once loses nothing; exactly-once loses nothing and
  duplicates nothing (a read_committed reader counts the decisions of every input offset);
* broker kill -9, restarted after an outage: the consumer and the retrain worker keep running (no
  restart), the consumer loses nothing, the worker answers a signed command afterwards.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from chaos.common import Ctx, Result, kill9, metric, publish_model, terminate, wait_until
from chaos.kafka_io import (
    PacedProducer,
    all_committed,
    close_clients,
    committed,
    service_topics,
    tally,
    wait_advanced,
    warm_up,
)
from chaos.worker import ctl, worker_env

RATE = 2000.0  # updates/s offered: enough to be mid-batch at any instant, light on a 2-core box


def consumer_kill(ctx: Ctx, *, delivery: str, client: str) -> Result:
    """kill -9 of ``stockwatch consume`` while updates stream in, then a restart."""
    res = Result("consumer kill -9, restart", f"{delivery}, {client}")
    eos = delivery == "exactly-once"
    total = 6000 if ctx.quick else 12000
    topics = service_topics(ctx, partitions=2)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        publish_model(model_dir)
        settings = ctx.consume_settings(topics, model_dir, delivery=delivery, kafka_client=client)
        if eos:
            settings["transactional_id"] = topics["input"] + ".tx"
        group, log = settings["group_id"], f"kill-{delivery}-{client}"
        first = ctx.spawn(["consume"], settings, log)
        if not res.check(
            warm_up(ctx.bootstrap, topics["input"], group), "the consumer is up (warm-up committed)"
        ):
            return res
        producer = PacedProducer(ctx.bootstrap, topics["input"], RATE, total).begin()
        time.sleep(1.0)
        kill9(first)
        killed_at = time.monotonic()
        at_kill = committed(
            ctx.bootstrap, group, topics["input"]
        )  # read after: no commit of the dead lands later
        second = ctx.spawn(["consume"], settings, log)
        advanced = wait_advanced(ctx.bootstrap, group, topics["input"], at_kill, 90)
        res.recovery_s = None if advanced is None else time.monotonic() - killed_at
        res.check(advanced is not None, "the restarted consumer committed past the killed one's offsets")
        producer.finish()
        res.check(sum(at_kill.values()) < producer.sent, "killed mid-stream (work left at the kill)")
        res.check(
            wait_until(lambda: all_committed(ctx.bootstrap, group, topics["input"]), 90),
            "every offset committed",
        )
        res.check(terminate(second) == 0, "SIGTERM exits 0")
    t = tally(ctx.bootstrap, topics, committed_only=eos)
    res.sent, res.lost, res.duplicated = t.sent, t.lost, t.duplicated
    res.check(t.lost == 0, "0 lost")
    if eos:
        res.check(t.duplicated == 0, "0 duplicated (read_committed)")
    return res


def consumer_kills(ctx: Ctx, *, delivery: str, client: str) -> list[Result]:
    return [consumer_kill(ctx, delivery=delivery, client=client)]


def broker_kill(ctx: Ctx, *, delivery: str, client: str, outage_s: float = 3.0) -> Result:
    """kill -9 of the broker mid-stream, restart after ``outage_s``: nobody restarts, nothing lost."""
    res = Result("broker kill -9, restart", f"{delivery}, {client}")
    eos = delivery == "exactly-once"
    # The stream outlasts the outage and goes on until commits have advanced after it: the broker's
    # restart (JVM start, probe) can take longer than a fixed-length stream, which then ended, was
    # all consumed and committed before the baseline was read, so nothing was left to advance.
    total = int(RATE * 600)  # a bound only: stopped once the checks after the outage are done
    topics = service_topics(ctx, partitions=2)
    control = ctx.topics("control")[0]
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        publish_model(model_dir)
        settings = ctx.consume_settings(topics, model_dir, delivery=delivery, kafka_client=client)
        if eos:
            settings["transactional_id"] = topics["input"] + ".tx"
        group = settings["group_id"]
        worker_settings = worker_env(
            ctx, model_dir, control, topics["status"], db=ctx.name("db").replace(".", "_")
        )
        consumer = ctx.spawn(["consume"], settings, f"broker-{delivery}-{client}")
        worker = ctx.spawn(["retrain-worker"], worker_settings, f"broker-worker-{delivery}-{client}")
        if not res.check(
            warm_up(ctx.bootstrap, topics["input"], group), "the consumer is up (warm-up committed)"
        ):
            return res
        answered = ctl(worker_settings, "status", timeout_s=40)[0] == 0
        res.check(answered, "the worker answered a signed `ctl status` before the kill")
        producer = PacedProducer(ctx.bootstrap, topics["input"], RATE, total).begin()
        try:
            time.sleep(1.5)
            ctx.stack.kill_kafka()
            close_clients()  # this suite's own readers start over on the restarted broker
            time.sleep(outage_s)
            restart_s = ctx.stack.start_kafka()
            back_at = time.monotonic()
            res.checks.append(f"broker answering again {restart_s:.1f} s after its restart")
            at_restart = committed(ctx.bootstrap, group, topics["input"])
            advanced = wait_advanced(ctx.bootstrap, group, topics["input"], at_restart, 120)
            res.recovery_s = None if advanced is None else time.monotonic() - back_at
            res.check(advanced is not None, "commits advance after the broker is back")
        finally:  # also when a check raised: no stream runs on into the next scenario
            producer.stop()
        rejoins = metric(settings["http_port"], "stockwatch_group_rejoins_total")
        res.checks.append(
            f"re-joins of the consumer: {rejoins:.0f}" if rejoins is not None else "no /metrics"
        )
        res.check(consumer.poll() is None, "the consumer process survived (no restart)")
        res.check(worker.poll() is None, "the worker process survived (no restart)")
        res.check(
            ctl(worker_settings, "status", timeout_s=60)[0] == 0,
            "the worker answers `ctl status` after the outage",
        )
        res.check(
            wait_until(lambda: all_committed(ctx.bootstrap, group, topics["input"]), 120),
            "every offset committed",
        )
        res.check(terminate(consumer) == 0, "consumer SIGTERM exits 0")
        terminate(worker)
    t = tally(ctx.bootstrap, topics, committed_only=eos)
    res.sent, res.lost, res.duplicated = t.sent, t.lost, t.duplicated
    res.check(t.lost == 0, "0 lost")
    if eos:
        res.check(t.duplicated == 0, "0 duplicated (read_committed)")
    return res

"""Two instances in one consumer group (4 input partitions).

* failover: one of two at-least-once instances is killed -9 mid-stream; the other takes its
  partitions over and nothing is lost;
* empty-store start (issue 13 defect 8, the split brain): both start without a model, then one is
  published while updates stream; duplicated decisions stay within what a rebalance may redeliver
  (the in-flight batches of the members) and the group commits everything. Repeated;
* two exactly-once instances on one host with the default transactional id (defect 9): both make
  progress (the stream runs on until both have committed), 0 lost, 0 duplicated.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from chaos.common import Ctx, Result, free_port, kill9, metric, publish_model, terminate, wait_until
from chaos.kafka_io import (
    PacedProducer,
    Tally,
    all_committed,
    committed,
    service_topics,
    tally,
    wait_advanced,
    warm_up,
)

RATE = 2000.0
MAX_POLL = 200
IN_FLIGHT = 3  # the batch being scored plus MAX_IN_FLIGHT = 2 awaiting acknowledgements


def failover(ctx: Ctx) -> Result:
    res = Result("two in a group, one killed -9", "at-least-once, kafka-python, 4 partitions")
    total = 8000 if ctx.quick else 16000
    topics = service_topics(ctx, partitions=4)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        publish_model(model_dir)
        base = ctx.consume_settings(topics, model_dir, max_poll_records=MAX_POLL)
        group = base["group_id"]
        a = ctx.spawn(["consume"], base, "failover-a")
        b_settings = base | {"http_port": free_port()}
        b = ctx.spawn(["consume"], b_settings, "failover-b")
        ports = (base["http_port"], b_settings["http_port"])
        shared = wait_until(
            lambda: all((metric(p, "stockwatch_assigned_partitions") or 0) >= 1 for p in ports), 60
        )
        res.check(shared, "both members were assigned partitions")
        res.check(warm_up(ctx.bootstrap, topics["input"], group), "the group is up (warm-up committed)")
        producer = PacedProducer(ctx.bootstrap, topics["input"], RATE, total).begin()
        time.sleep(1.0)
        kill9(a)
        killed_at = time.monotonic()
        at_kill = committed(
            ctx.bootstrap, group, topics["input"]
        )  # read after: no commit of the dead lands later
        advanced = wait_advanced(ctx.bootstrap, group, topics["input"], at_kill, 90)
        res.recovery_s = None if advanced is None else time.monotonic() - killed_at
        res.check(
            advanced is not None, "the survivor committed past the killed member's offsets on every partition"
        )
        producer.finish()
        res.check(
            wait_until(lambda: all_committed(ctx.bootstrap, group, topics["input"]), 90),
            "every offset committed",
        )
        res.check(b.poll() is None and terminate(b) == 0, "the survivor ran on and SIGTERM exits 0")
    t = tally(ctx.bootstrap, topics, committed_only=False)
    res.sent, res.lost, res.duplicated = t.sent, t.lost, t.duplicated
    res.check(t.lost == 0, "0 lost")
    return res


def empty_store_start(ctx: Ctx, *, attempts: int) -> Result:
    """Both members start on an empty model directory; a model arrives while updates stream."""
    res = Result("two in a group, model arrives late", f"at-least-once, kafka-python, {attempts} attempts")
    bound = 2 * 2 * IN_FLIGHT * MAX_POLL  # two members x two rebalances (join, model) x in-flight batches
    worst = 0
    for attempt in range(1, attempts + 1):
        t = _late_model_attempt(ctx, res, attempt)
        res.sent += t.sent
        res.lost += t.lost
        res.duplicated += t.duplicated
        worst = max(worst, t.duplicated)
        res.check(t.lost == 0, f"attempt {attempt}: 0 lost")
        res.check(
            t.duplicated <= bound,
            f"attempt {attempt}: {t.duplicated} duplicated <= {bound} (in-flight batches)",
        )
    res.checks.append(f"worst attempt duplicated {worst}")
    return res


def _late_model_attempt(ctx: Ctx, res: Result, attempt: int) -> Tally:
    total = 6000 if ctx.quick else 10000
    topics = service_topics(ctx, partitions=4)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        model_dir.mkdir()
        base = ctx.consume_settings(topics, model_dir, max_poll_records=MAX_POLL)
        group = base["group_id"]
        b_settings = base | {"http_port": free_port()}
        ports = (base["http_port"], b_settings["http_port"])
        procs = [ctx.spawn(["consume"], base, f"late-{attempt}-a")]
        waiting = wait_until(lambda: metric(ports[0], "stockwatch_waiting_for_model") == 1, 60)
        res.check(waiting, f"attempt {attempt}: the first member waits for a model")
        producer = PacedProducer(ctx.bootstrap, topics["input"], RATE, total).begin()
        # The second joins while the first is paused; the model lands at a different moment of
        # that rebalance in each attempt (the race of the split brain).
        procs.append(ctx.spawn(["consume"], b_settings, f"late-{attempt}-b"))
        wait_until(lambda: metric(ports[1], "stockwatch_waiting_for_model") is not None, 60, 0.05)
        time.sleep((attempt - 1) % 4 * 0.7)
        publish_model(model_dir)
        producer.finish()
        done = wait_until(lambda: all_committed(ctx.bootstrap, group, topics["input"]), 60)
        res.check(done, f"attempt {attempt}: the group committed every offset")
        codes = [terminate(p) for p in procs]
        res.check(codes == [0, 0], f"attempt {attempt}: both exit 0 on SIGTERM (got {codes})")
        ctx.stop_all()
    return tally(ctx.bootstrap, topics, committed_only=False)


def two_exactly_once(ctx: Ctx) -> Result:
    """Two exactly-once instances, same host, same group, default transactional id: both progress."""
    res = Result("two exactly-once on one host", "default transactional id, kafka-python, 4 partitions")
    total = 6000 if ctx.quick else 12000
    topics = service_topics(ctx, partitions=4)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        publish_model(model_dir)
        base = ctx.consume_settings(topics, model_dir, max_poll_records=MAX_POLL, delivery="exactly-once")
        group = base["group_id"]
        b_settings = base | {"http_port": free_port()}
        procs = [ctx.spawn(["consume"], base, "eos-a"), ctx.spawn(["consume"], b_settings, "eos-b")]
        ports = (base["http_port"], b_settings["http_port"])
        settled = wait_until(
            lambda: all((metric(p, "stockwatch_assigned_partitions") or 0) >= 1 for p in ports), 60
        )
        res.check(settled, "both members were assigned partitions before the stream")
        began = time.monotonic()
        # Streams on past ``total`` until both have committed: a member that a late rebalance
        # leaves idle through a short stream would otherwise never get the chance to commit.
        producer = PacedProducer(ctx.bootstrap, topics["input"], RATE, 10 * total).begin()
        both = wait_until(lambda: all((metric(p, "stockwatch_commits_total") or 0) > 0 for p in ports), 60)
        res.recovery_s = time.monotonic() - began if both else None
        res.check(both, "both instances committed transactions (recovery s: stream start to that)")
        wait_until(lambda: producer.sent >= total, 60)
        producer.stop()
        drained = wait_until(lambda: all_committed(ctx.bootstrap, group, topics["input"]), 60 if both else 15)
        res.check(drained, "every offset committed")
        failures = [int(metric(p, "stockwatch_delivery_failures_total") or 0) for p in ports]
        res.check(
            max(failures) <= 2, f"no fencing: failed transactions per instance {failures} <= 2 (a rebalance)"
        )
        codes = [terminate(p) for p in procs]
        res.check(codes == [0, 0], f"both exit 0 on SIGTERM (got {codes})")
    t = tally(ctx.bootstrap, topics, committed_only=True)
    res.sent, res.lost, res.duplicated = t.sent, t.lost, t.duplicated
    res.check(t.lost == 0, "0 lost")
    res.check(t.duplicated == 0, "0 duplicated (read_committed)")
    return res

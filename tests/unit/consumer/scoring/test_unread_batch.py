"""A batch the source skipped unread (a compressed bomb) becomes one dead letter naming its offsets."""

from __future__ import annotations

import orjson

from consumer.ports import UnreadBatch
from consumer.scoring.batch import BatchConfig, validate_records
from tests.fakes import Rec, item
from tests.schemas import dlq_headers, validate


def test_an_unread_batch_among_records_is_dead_lettered_with_its_reason_and_offset_range() -> None:
    good = [Rec("in", 2, o, 1_000 + o, None, orjson.dumps(item(o)), []) for o in (3, 9)]
    error = "gzip record batch of in[2] at offsets 4..8 (5 record(s)) inflates beyond ...: skipped unread"
    unread = UnreadBatch("in", 2, 8, 4, "decompression_bomb", error)
    batch = validate_records([good[0], unread, good[1]], BatchConfig(anomaly_topic="a", dlq_topic="dlq"))
    assert [s.offset for s in batch.sources] == [3, 9]
    assert batch.dlq_reasons == {"decompression_bomb": 1}
    (letter,) = batch.dead_letters
    headers = validate("dlq-headers", dlq_headers(letter.headers))
    assert headers["dlq.reason"] == "decompression_bomb" and headers["dlq.error"] == error
    assert (headers["dlq.source.first_offset"], headers["dlq.source.offset"]) == ("4", "8")
    assert (letter.topic, letter.key, letter.value) == ("dlq", None, b"")


def test_ordinary_dead_letters_carry_no_first_offset() -> None:
    empty = Rec("in", 0, 5, None, None, b"", [])
    (letter,) = validate_records([empty], BatchConfig(anomaly_topic="a", dlq_topic="dlq")).dead_letters
    assert "dlq.source.first_offset" not in dict(letter.headers)

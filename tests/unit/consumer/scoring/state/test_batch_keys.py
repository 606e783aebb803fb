"""One lookup per batch: ids deduplicated once (``distinct``, BatchKeys), probed once (the numba
probe), their rows reused by the put. Held to what hashing and probing every id again gave: the
same rows, records, undo data, ABSENT semantics and rollbacks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.scoring.state.batch_items import prior_states, staged_changes
from consumer.scoring.state.batch_keys import BatchKeys
from consumer.scoring.state.id_blob import IdBlob
from consumer.scoring.state.item_ids import distinct, id_hashes
from consumer.scoring.state.record import states_of
from consumer.scoring.state.store import StagedChanges, StateStore
from consumer.scoring.state.table import ABSENT, PartitionTable
from detection.item_state import STATE_DTYPE
from detection.probe_kernel import distinct_bytes, find_rows
from tests.fakes import MemoryChangelog, foreground_store

IDS = st.sampled_from(["a", "b", "c", "d", "é", "", "a\x1f", "\x1fa", "sku-1", "sku-10"])


def numpy_find(slots, t1, t2, h1, h2):
    """The vectorised probe the kernel replaced (PartitionTable._find before it)."""
    mask = np.uint64(slots.size - 1)
    out = np.full(h1.size, -1, np.intp)
    pos = (h1 & mask).astype(np.intp)
    todo = np.arange(h1.size)
    while todo.size:
        rows = slots[pos[todo]].astype(np.intp)
        used = rows != -1
        hit = used.copy()
        hit[used] = (t1[rows[used]] == h1[todo[used]]) & (t2[rows[used]] == h2[todo[used]])
        out[todo[hit]] = rows[hit]
        todo = todo[used & ~hit]
        pos[todo] = (pos[todo] + 1) & int(mask)
    return out


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2)), max_size=16, unique=True), st.data())
def test_the_probe_kernel_finds_what_the_numpy_probe_found(keys: list[tuple[int, int]], data) -> None:
    slots = np.full(32, -1, np.int32)  # load <= 1/2; h1 values collide modulo 32 and wrap around
    t1 = np.array([k[0] for k in keys], np.uint64)
    t2 = np.array([k[1] for k in keys], np.uint64)  # equal h1, other h2: another key
    for row, h in enumerate(t1.tolist()):
        pos = h % 32
        while slots[pos] != -1:
            pos = (pos + 1) % 32
        slots[pos] = row
    asked = data.draw(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2)), max_size=20))
    h1 = np.array([a[0] for a in asked], np.uint64)
    h2 = np.array([a[1] for a in asked], np.uint64)
    got = find_rows(slots, t1, t2, h1, h2)
    assert got.tolist() == numpy_find(slots, t1, t2, h1, h2).tolist()
    assert got.tolist() == [keys.index(a) if a in keys else -1 for a in asked]


@settings(max_examples=100, deadline=None)
@given(st.lists(IDS, max_size=40))
def test_distinct_is_first_occurrence_order_and_each_ids_index(ids: list[str]) -> None:
    uniq, u = distinct(ids)
    assert uniq == list(dict.fromkeys(ids))
    assert u.dtype == np.intp and u.tolist() == [uniq.index(i) for i in ids]
    keys = BatchKeys.of(ids)
    assert keys.ids == uniq and keys.u.tolist() == u.tolist() and keys.rows is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(IDS, st.text(max_size=4), st.just("\ud800x")), max_size=60), st.booleans())
def test_batch_keys_deduplicate_and_hash_as_distinct_and_id_hashes(ids: list[str], nul: bool) -> None:
    if nul:  # an id holding a NUL: the NUL-joined split does not apply (split by lengths instead)
        ids = [*ids, "a\x00b", "a"]
    keys = BatchKeys.of(ids)  # compiled: by the byte hash, then the bytes
    uniq, u = distinct(ids)
    assert keys.ids == uniq and keys.u.dtype == np.intp and keys.u.tolist() == u.tolist()
    assert keys.hashes is not None
    assert [h.tolist() for h in keys.hashes] == [h.tolist() for h in id_hashes(uniq)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(IDS, st.text(max_size=3)), max_size=40), st.integers(1, 3))
def test_ids_whose_hashes_collide_are_told_apart_by_their_bytes(ids: list[str], spread: int) -> None:
    blob = IdBlob.encode(ids, errors="surrogatepass")
    codes = [sum(i.encode("utf-8", "surrogatepass")) % spread for i in ids]  # a hash of few values
    forced = np.array(codes, np.uint64)  # equal for equal ids, and for many unequal ones
    u, first, hashes = distinct_bytes(blob.data, np.cumsum(blob.lengths), forced)
    uniq, expect = distinct(ids)
    assert u.tolist() == expect.tolist() and [ids[f] for f in first.tolist()] == uniq
    assert hashes.tolist() == forced[first].tolist()


def test_an_empty_batch_has_no_keys() -> None:
    keys = BatchKeys.of([])
    assert keys.ids == [] and keys.u.size == 0 and keys.hashes is not None and keys.hashes[1].size == 0
    assert PartitionTable().find(keys.ids, keys.hashes).size == 0


def fnv_fmix(data: bytes) -> int:
    """The second id hash, in plain Python: FNV-1a 64 of the bytes, then MurmurHash3's fmix64."""
    m = 2**64 - 1
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & m
    for mul in (0xFF51AFD7ED558CCD, 0xC4CEB93F53FE1C4F):
        h = ((h ^ (h >> 33)) * mul) & m
    return h ^ (h >> 33)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(IDS, st.text(max_size=5), st.just("\ud800x")), max_size=12))
def test_an_ids_hashes_do_not_depend_on_the_other_ids_of_its_batch(ids: list[str]) -> None:
    h1, h2 = id_hashes(ids)  # an id beyond ASCII (or a lone surrogate) takes the per-id encoding
    assert h1.view(np.int64).tolist() == [hash(i) for i in ids]
    assert h2.tolist() == [fnv_fmix(i.encode("utf-8", "surrogatepass")) for i in ids]
    ascii_only = list(dict.fromkeys(i for i in ids if i.isascii()))
    assert id_hashes(ascii_only)[1].tolist() == [fnv_fmix(i.encode()) for i in ascii_only]
    table = PartitionTable(capacity=1)
    table.put(ascii_only, one([1.0] * len(ascii_only)), [0] * len(ascii_only))  # hashed ASCII-only
    assert table.find([*ascii_only, "\u20ac"]).tolist() == [*range(len(ascii_only)), -1]


def one(stock: list[float]) -> np.ndarray:
    out = np.zeros(len(stock), STATE_DTYPE)
    out["stock"] = stock
    return out


BATCHES = st.lists(
    st.tuples(
        st.lists(IDS, max_size=10),  # looked up (repeats; some never put)
        st.lists(IDS, max_size=6, unique=True),  # then put (some not looked up: no row given)
        st.booleans(),  # and the put undone (writing back what it returned: inserts become ABSENT)
    ),
    max_size=15,
)


@settings(max_examples=80, deadline=None)
@given(BATCHES)
def test_a_put_given_the_lookups_rows_does_what_a_put_of_ids_alone_does(batches) -> None:
    hinted, plain = PartitionTable(capacity=1), PartitionTable(capacity=1)
    rows_of: dict[str, int] = {}  # the model: rows in insertion order, never moved
    held: dict[str, tuple[float, int]] = {}
    for step, (looked, ids, undo) in enumerate(batches):
        expect = [rows_of[i] if i in held else -1 for i in looked]
        assert hinted.lookup(looked).tolist() == plain.lookup(looked).tolist() == expect
        found = dict(zip(looked, hinted.find(looked).tolist(), strict=True))
        assert found == {i: rows_of.get(i, -1) for i in looked}  # ABSENT rows are found
        hint = np.array([found.get(i, -1) for i in ids], np.intp)
        recs, offs = one([float(step)] * len(ids)), [step] * len(ids)
        before = hinted.put(ids, recs, offs, rows=hint)
        assert hint.tolist() == [found.get(i, -1) for i in ids]  # the caller's rows stay as they were
        same = plain.put(ids, recs, offs)
        assert before[0].tobytes() == same[0].tobytes() and before[1].tolist() == same[1].tolist()
        assert before[1].tolist() == [held[i][1] if i in held else ABSENT for i in ids]
        assert before[0]["stock"].tolist() == [held[i][0] if i in held else 0.0 for i in ids]
        was = {i: held.get(i) for i in ids}
        for i in ids:
            rows_of.setdefault(i, len(rows_of))
            held[i] = (float(step), step)
        if undo:
            hinted.put(ids, *before, rows=hinted.find(ids))
            plain.put(ids, *same)
            for i, v in was.items():
                if v is None:
                    held.pop(i)
                else:
                    held[i] = v
        assert hinted.rows == plain.rows == len(rows_of) and len(hinted) == len(plain) == len(held)
    everything = [*rows_of, "never"]
    assert hinted.find(everything).tolist() == [*rows_of.values(), -1]
    for table in (hinted, plain):
        got, off = table.gather(table.find(everything))
        assert got["stock"].tolist() == [held[i][0] if i in held else 0.0 for i in everything]
        assert off.tolist() == [held[i][1] if i in held else ABSENT for i in everything]


def run_batch(store: StateStore, parts: list[int], ids: list[str], offset: int, touched, *, keyed: bool):
    """The change path's state steps (change_batch.process_change_batch): prior, items, staged, apply."""
    keys = BatchKeys.of(ids) if keyed else None
    prior, prior_offsets = store.prior(parts, ids, keys)
    items = prior_states(SimpleNamespace(item_ids=ids), states_of(prior), prior_offsets != ABSENT, None, keys)
    items.records["stock"] += 1.0
    items.records["ref_price"] = 1.0
    offsets = np.arange(offset, offset + len(ids), dtype=np.int64)
    staged = staged_changes(items, np.resize(touched, len(items.ids)), offsets, parts)
    store.apply(staged)
    return prior, prior_offsets, items, staged


def contents(store: StateStore, ids: list[str]):
    out = {}
    for p in sorted(store.owned):
        table = store.table(p)
        rows = table.find(ids)
        records, offsets = table.gather(rows)
        out[p] = (rows.tolist(), records.tobytes(), offsets.tolist(), len(table), table.rows)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(0, 1), IDS), min_size=1, max_size=12),  # (partition, id): repeats
            st.lists(st.booleans(), min_size=1, max_size=12),  # which items change
            st.integers(0, 3),  # 0: acknowledged, 1: a rewind undoes the unacknowledged batches
        ),
        max_size=10,
    )
)
def test_the_store_with_batch_keys_matches_the_store_without(batches) -> None:
    keyed, plain = foreground_store(MemoryChangelog()), foreground_store(MemoryChangelog())
    for store in (keyed, plain):
        store.assign(0, resume_offset=0)
        store.assign(1, resume_offset=0)
    every = [*sorted({i for batch, _, _ in batches for _, i in batch}), "never"]
    offset = 0
    for batch, touched, what in batches:
        parts, ids = [p for p, _ in batch], [i for _, i in batch]
        a = run_batch(keyed, parts, ids, offset, np.asarray(touched), keyed=True)
        b = run_batch(plain, parts, ids, offset, np.asarray(touched), keyed=False)
        offset += len(ids)
        assert a[0].tobytes() == b[0].tobytes() and a[1].tolist() == b[1].tolist()  # the priors
        assert a[2].ids == b[2].ids and a[2].u.tolist() == b[2].u.tolist()
        assert a[2].known.tolist() == b[2].known.tolist() and a[2].records.tobytes() == b[2].records.tobytes()
        assert _chunks(a[3]) == _chunks(b[3]) and set(a[3].rows) == set(a[3].by_partition)
        assert all(t is keyed.table(p) for p, (t, _) in a[3].rows.items())  # once applied: the puts' rows
        assert all(t is plain.table(p) for p, (t, _) in b[3].rows.items())
        assert {p: r.tolist() for p, (_, r) in a[3].rows.items()} == {
            p: r.tolist() for p, (_, r) in b[3].rows.items()
        }
        assert [_undo(u) for u in keyed.in_flight()] == [_undo(u) for u in plain.in_flight()]
        if what == 1:
            assert keyed.rollback() == plain.rollback()
        elif what == 0:
            keyed.settled(10**9)
            plain.settled(10**9)
        assert contents(keyed, every) == contents(plain, every)


def _chunks(staged: StagedChanges):
    return {p: (ids, r.tobytes(), o.tolist()) for p, (ids, r, o) in staged.by_partition.items()}


def _undo(undo):
    return {p: (ids, r.tobytes(), o.tolist(), rows.tolist()) for p, (ids, r, o, rows) in undo.items()}


def test_rows_looked_up_in_a_table_since_replaced_are_not_used() -> None:
    store = StateStore(MemoryChangelog())
    store.assign(0, resume_offset=0)
    store.apply(StagedChanges({0: (["x", "y"], one([1.0, 2.0]), np.array([0, 1]))}))
    ids = ["y", "z"]
    keys = BatchKeys.of(ids)
    prior, offsets = store.prior([0, 0], ids, keys)
    assert keys.rows is not None and keys.rows.tolist() == [1, -1]
    items = prior_states(SimpleNamespace(item_ids=ids), states_of(prior), offsets != ABSENT, None, keys)
    staged = staged_changes(items, np.array([True, True]), np.array([5, 6]), [0, 0])
    assert staged.rows[0][1].tolist() == [1, -1]
    store.revoke([0])  # a rebalance between the batch's lookup and its put: a new table
    store.assign(0, resume_offset=0)
    store.apply(staged)
    table = store.table(0)
    assert table.find(["y", "z", "x"]).tolist() == [0, 1, -1]  # inserted afresh, not written at row 1
    assert table.gather(table.find(ids))[1].tolist() == [5, 6]


def reference_items(ids, prior, known):
    """prior_states (no seeds) as it was before BatchKeys: two dicts, a masked gather."""
    uniq = list(dict.fromkeys(ids))
    index = dict(zip(uniq, range(len(uniq)), strict=True))
    u = np.array([index[i] for i in ids], np.intp)
    records = np.zeros(len(uniq), STATE_DTYPE)
    pick = np.full(len(uniq), -1, np.intp)
    rows = np.flatnonzero(known)
    np.maximum.at(pick, u[rows], rows)
    have = pick >= 0
    records[have] = prior[pick[have]]
    return uniq, u, records, have


def reference_staged(uniq, u, records, touched, input_offsets, partitions):
    """staged_changes as it was: the last update's offset and partition per changed item."""
    last = np.full(len(uniq), -1, np.intp)
    np.maximum.at(last, u, np.arange(len(u)))
    out: dict[int, tuple[list[str], bytes, list[int]]] = {}
    for j in np.flatnonzero(touched).tolist():
        ids, recs, offs = out.setdefault(partitions[last[j]], ([], b"", []))
        out[partitions[last[j]]] = (
            [*ids, uniq[j]],
            recs + records[j : j + 1].tobytes(),
            [*offs, int(input_offsets[last[j]])],
        )
    return out


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), IDS, st.booleans()), max_size=14),  # (partition, id, known)
    st.lists(st.booleans(), min_size=1, max_size=10),
    st.booleans(),
)
def test_prior_states_and_staged_changes_give_what_they_gave_before_batch_keys(rows, touched, keyed) -> None:
    ids, parts = [i for _, i, _ in rows], [p for p, _, _ in rows]
    known = np.array([k for _, _, k in rows], bool)
    prior = np.zeros(len(ids), STATE_DTYPE)
    prior["stock"] = np.arange(len(ids))  # each update's prior differs: which one is picked shows
    keys = BatchKeys.of(ids) if keyed else None
    items = prior_states(SimpleNamespace(item_ids=ids), prior, known, None, keys)
    uniq, u, records, have = reference_items(ids, prior, known)
    assert items.ids == uniq and items.u.tolist() == u.tolist()
    assert items.known.tolist() == have.tolist() and items.records.tobytes() == records.tobytes()
    changed = np.resize(np.asarray(touched), len(uniq))
    offsets = np.arange(100, 100 + len(ids), dtype=np.int64)
    staged = staged_changes(items, changed, offsets, parts)
    assert _chunks(staged) == reference_staged(uniq, u, records, changed, offsets, parts)

"""``load_arrays`` checks every member's header and size before reading its data (faults and attacks)."""

from __future__ import annotations

import io
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npformat

from detection import parse_item, train_model
from detection.scorer_arrays import SCORER_KEYS, ScorerArrayError, dump_arrays, load_arrays


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(5)
    items = [
        parse_item({"item_id": f"sku-{i}", "stock_quantity": float(rng.integers(50, 200))}) for i in range(64)
    ]
    return {k: np.asarray(v) for k, v in train_model(items).to_arrays().items()}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    npformat.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _zip(members: list[tuple[str, bytes]], *, stream: tuple[str, bytes, int] | None = None) -> bytes:
    """An npz of ``members``; ``stream`` = (name, header, n zero bytes) written compressed in chunks."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # duplicate names are the point of one test
        for name, data in members:
            archive.writestr(name, data)
        if stream is not None:
            name, header, n_zeros = stream
            with archive.open(name, "w", force_zip64=True) as fh:
                fh.write(header)
                chunk = bytes(1 << 20)
                for start in range(0, n_zeros, len(chunk)):
                    fh.write(chunk[: min(len(chunk), n_zeros - start)])
    return buffer.getvalue()


def _others(arrays, *skip: str) -> list[tuple[str, bytes]]:
    return [(f"{k}.npy", _npy(arrays[k])) for k in SCORER_KEYS if k not in skip]


def _header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buffer = io.BytesIO()
    npformat.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_a_small_compressed_member_that_expands_is_refused_before_its_data_is_read(arrays):
    n = 10_000_000  # 80 MB of zeros, under 100 KB compressed
    data = _zip(_others(arrays, "mean"), stream=("mean.npy", _header((n,)), n * 8))
    assert len(data) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ScorerArrayError, match="mean"):
            load_arrays(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes allocated while refusing it"


def test_a_header_claiming_a_huge_shape_is_a_clean_refusal(arrays):
    fake = _header((1099511627776,)) + bytes(64)
    with pytest.raises(ScorerArrayError):
        load_arrays(_zip([*_others(arrays, "mean"), ("mean.npy", fake)]))


def test_a_member_whose_size_disagrees_with_its_header_is_refused(arrays):
    truncated = _npy(arrays["scale"])[:-8]
    with pytest.raises(ScorerArrayError, match="scale"):
        load_arrays(_zip([*_others(arrays, "scale"), ("scale.npy", truncated)]))


def test_a_scalar_with_a_shape_is_refused_before_reading(arrays):
    with pytest.raises(ScorerArrayError, match="offset"):
        load_arrays(_zip([*_others(arrays, "offset"), ("offset.npy", _npy(np.zeros(3)))]))


@pytest.mark.parametrize("extra", ["duplicate", "extra"])
def test_extra_or_duplicate_members_are_refused(arrays, extra):
    members = _others(arrays)
    members.append(
        ("mean.npy", _npy(arrays["mean"])) if extra == "duplicate" else ("x.npy", _npy(np.zeros(1)))
    )
    with pytest.raises(ScorerArrayError, match="once each"):
        load_arrays(_zip(members))


def test_an_object_array_member_is_refused(arrays):
    with pytest.raises(ScorerArrayError):
        load_arrays(_zip([*_others(arrays, "mean"), ("mean.npy", _header((3,), "|O"))]))


def test_the_real_file_still_loads(arrays):
    loaded = load_arrays(dump_arrays(arrays))
    assert set(loaded) == set(SCORER_KEYS)
    assert np.array_equal(loaded["nodes"], arrays["nodes"])


def test_a_compressed_forest_declaring_millions_of_nodes_is_refused_from_the_directory(arrays):
    """The attack: consistent headers for a huge forest of zeros, deflated to a small file."""
    n = 4_000_000  # 68 MB of node arrays, well under 1 MB compressed
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _others(arrays, "nodes", "leaf_value", "missing_left"):
            archive.writestr(name, data)
        for name, descr, itemsize in (("nodes", arrays["nodes"].dtype.descr, 8), ("leaf_value", "<f8", 8),
                                      ("missing_left", "|u1", 1)):  # fmt: skip
            with archive.open(f"{name}.npy", "w", force_zip64=True) as fh:
                fh.write(_header((n,), descr))
                for start in range(0, n * itemsize, 1 << 22):
                    fh.write(bytes(min(1 << 22, n * itemsize - start)))
    data = buffer.getvalue()
    assert len(data) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(
            ScorerArrayError, match=r"declare \d+ uncompressed bytes .* refused before decompressing"
        ):
            load_arrays(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes allocated while refusing it"

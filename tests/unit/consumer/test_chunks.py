"""``chunked``: fixed-size lists, lazily."""

import itertools

import pytest

from consumer.chunks import chunked


@pytest.mark.parametrize(("n", "size", "sizes"), [(0, 3, []), (3, 3, [3]), (7, 3, [3, 3, 1]), (2, 5, [2])])
def test_sizes_and_order(n, size, sizes):
    chunks = list(chunked(range(n), size))
    assert [len(c) for c in chunks] == sizes
    assert [x for c in chunks for x in c] == list(range(n))


def test_reads_no_further_than_the_chunk_it_yields():
    source = itertools.count()
    first = next(chunked(source, 4))
    assert first == [0, 1, 2, 3] and next(source) == 4


def test_a_size_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        list(chunked([1], 0))

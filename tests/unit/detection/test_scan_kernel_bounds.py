"""The record scanner reads and writes nothing outside its arrays, whatever a record holds.

numba compiles no bounds checks: a kernel that reads one byte past a record reads the next
record's bytes (or past the buffer) silently. Here the kernels are compiled again with
``NUMBA_BOUNDSCHECK=1`` (in a child process, with its own numba cache) and every prefix of records
that stop in the middle of a key, a string, a number or a literal is scanned in a buffer of
exactly its size: a read past the record's end is a read past the buffer, which now raises
IndexError; so is any write outside the columns. Random bytes drawn from JSON's punctuation too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import random

import numpy as np
from numba.core import config

from detection.scan_kernel import _literal, joined_spans, scan_records

assert config.BOUNDSCHECK, "bounds checks are off"
try:  # the checks are compiled in: a read past the buffer raises
    _literal(np.zeros(3, np.uint8), 3, 9, np.frombuffer(b"null", np.uint8))
except IndexError:
    pass
else:
    raise AssertionError("a read past the buffer did not raise")

RECORDS = [
    b'{"item_id": "a", "price": 1.5, "stock_quantity": -0, "event_id": null, "x": true, "y": false, '
    b'"category": "tv", "occurred_at": 1700000000.125, "min_stock_level": 0.000000000000001, '
    b'"max_stock_level": 999999999999999, "": ""}',
    b' { "item_id" : "abc" , "category" : null , "z" : -12.5e3 } ',
    b'{"item_id":"a","n":null}', b'{"item_id":"a","n":true}', b'{"item_id":"a","n":false}',
    b'{"item_id":"a","n":-0.5}', b'{"item_id":"a","n":01}', b'{"item_id":"a","n":"\\u0041"}',
    b'{"item_id":"a","n":{"m":[1]}}', b'{"item_id":"a","min_stock":3}', b'{"item_id":"a","item_id":"b"}',
    b'{"item_id":"a","price":1234567890123456}', b'{}', b'{ }', b'[]', b'"s"', b'7', b'null',
]
checked = 0


def scan(value, group):
    global checked
    buf = np.frombuffer(value, np.uint8).copy()  # exactly the record: past it is past the buffer
    found = scan_records(buf, np.array([0, len(value)], np.int64), group)
    if found is not None:
        for k in range(3):
            joined_spans(buf, found[1][:, k])
    checked += 1


for record in RECORDS:
    for cut in range(len(record) + 1):
        for tail in (b"", b" ", b"\n\t"):
            for group in (b"category", b"", b"n"):
                scan(record[:cut] + tail, group)
rng = random.Random(0)
alphabet = b'{}[]":,0123456789.-eEnultrfas_id \\'
for _ in range(20000):
    scan(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 30))), b"category")
print("checked", checked)
"""


def test_no_record_makes_the_kernel_read_or_write_outside_its_arrays(tmp_path: Path) -> None:
    env = os.environ | {"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path),
                        "PYTHONPATH": str(ROOT)}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    word, count = done.stdout.split()
    assert word == "checked" and int(count) > 20000

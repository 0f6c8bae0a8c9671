"""The API's collector tuning (`handlers.serve.tune_gc`) still frees garbage that only the cyclic
collector can free: tuned in a process of its own, so this test process is left as it was."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, weakref
from handlers.serve import GC_YOUNG_THRESHOLD, tune_gc

class Node:
    pass

tune_gc()
assert gc.isenabled() and gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
assert gc.get_freeze_count() > 0  # start-up's objects are out of the collector's way
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: reference counting alone never frees it
gone = weakref.ref(a)
del a, b
kept = [[] for _ in range(2 * GC_YOUNG_THRESHOLD)]  # allocations past the threshold
print("freed" if gone() is None else "leaked")
"""


def test_a_cycle_is_freed_once_allocations_pass_the_tuned_threshold() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "freed", out.stderr

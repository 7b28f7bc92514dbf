"""The heap a batch or the proxy starts with, left out of the cyclic collector's scans while calls run.

A full collection walks every tracked object: with the models, the SDK and the caller's data loaded that
is hundreds of thousands of objects and tens of milliseconds, during which every call in flight waits on
the loop (the batch's and the proxy's p99). ``gc.freeze`` moves what is alive now to a permanent
generation, so a full collection walks only what was allocated since; ``gc.unfreeze`` gives it back when
the last holder of the process ends. Cyclic garbage made before is collected first, so none is kept.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0  # batches (and a proxy) running in this process: the heap thaws when the last one ends


@contextmanager
def frozen_heap() -> Iterator[None]:
    global _holders
    with _lock:
        _holders += 1
        if _holders == 1 and gc.isenabled():
            gc.collect()
            gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                gc.unfreeze()

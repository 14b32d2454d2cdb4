"""Concurrent searches in one worker share one pass over the index.

An exact search reads every stored vector, and for a single query that memory
traffic is most of its cost. Requests that arrive while a search is running
wait for it to finish and then go together as one batch: the first waiting
thread runs the batch for all of them.
"""

import threading
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Job:
    queries: np.ndarray
    k: int
    done: threading.Event = field(default_factory=threading.Event)
    hits: list | None = None
    error: BaseException | None = None


class SearchBatcher:
    def __init__(self, search):
        self._search = search  # (queries, k) -> one hit list per query
        self._lock = threading.Lock()
        self._pending: list[_Job] = []
        self._busy = False

    def search(self, queries: np.ndarray, k: int) -> list:
        job = _Job(queries, k)
        with self._lock:
            self._pending.append(job)
            lead = not self._busy
            self._busy = True
        if lead:
            self._run_pending()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.hits

    def _run_pending(self) -> None:
        """Run batches until nobody is waiting (bounded by the request threads)."""
        while True:
            with self._lock:
                jobs, self._pending = self._pending, []
                if not jobs:
                    self._busy = False
                    return
            try:
                hits = self._search(
                    np.concatenate([job.queries for job in jobs]),
                    max(job.k for job in jobs),
                )
                start = 0
                for job in jobs:
                    end = start + len(job.queries)
                    job.hits = [h[: job.k] for h in hits[start:end]]
                    start = end
            except BaseException as e:  # handed to every waiting request
                for job in jobs:
                    job.error = e
            finally:
                for job in jobs:
                    job.done.set()

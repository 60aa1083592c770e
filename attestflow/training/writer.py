"""Checkpoint and metric writes off the training thread, in order, never more than a few behind.

Writing a checkpoint (serialising, fsync, hashing) and logging a metric to MLflow cost the
same whatever the data size, so on small data they rival the training itself. One writer
thread runs them in the order they were submitted while the next steps train; the state it
writes is a CPU copy taken at the step it belongs to, so what lands on disk is exactly what
a synchronous write would have written. The queue is bounded: when the disk falls behind,
training waits instead of piling up copies of the state. A write that failed is raised in
the training thread at the next submit or wait, and leaving the ``with`` block (normally or
by an exception) first finishes every write already submitted.

A thread only pays where the job mostly waits on the disk (hashing, writing and fsync release
the GIL): a job of mostly Python work competes with the training thread for the GIL and slows
small models' steps more than the job costs, so callers run such jobs inline (``background=False``),
still in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

PENDING = 2
"""Jobs that may wait behind the one being written (each may hold a copy of the training state)."""


class BackgroundWriter:
    """A single thread running submitted jobs in order; a context manager that drains it on exit."""

    def __init__(self, pending: int = PENDING) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=pending)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BackgroundWriter:
        self._thread = threading.Thread(target=self._run, name="attestflow-checkpoints", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        if exc is None:
            self._raise()

    def submit(self, job: Callable[[], None], *, background: bool = True) -> None:
        """Run `job` after every job submitted before it: in the writer thread (waiting while the queue
        is full), or, if not `background`, in this one once the queue is empty."""
        self._raise()
        if self._thread is None or not background:
            self.wait()
            job()
            return
        self._jobs.put(job)

    def wait(self) -> None:
        """Return once every submitted job has finished; raise the first one that failed."""
        if self._thread is not None:
            self._jobs.join()
        self._raise()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self._error is None:  # after a failure the rest is skipped, not half-done
                    job()
            except BaseException as e:  # handed to the training thread
                self._error = e
            finally:
                self._jobs.task_done()
        self._jobs.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

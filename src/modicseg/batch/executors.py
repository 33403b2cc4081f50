"""Where jobs run: in this process, in local worker processes, or on a Dask cluster.

All three hand out ``concurrent.futures.Future`` objects, so the runner has one loop.  Local
workers are spawned (not forked), limited to one thread per job, and die with the batch process
(Linux ``PR_SET_PDEATHSIG``), so a ``kill -9`` of the batch leaves no orphan writing results.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any


class InlineExecutor(cf.Executor):
    """Runs each job at submit time in this process (workers=0: debugging, tiny batches)."""

    generation = 0
    capacity = 1

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the runner like any worker error
            future.set_exception(exc)
        return future

    def rebuild(self) -> None:
        pass


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # parent already gone
            os._exit(1)


def _init_worker() -> None:
    _die_with_parent()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the batch process


class LocalPool:
    """A process pool that can be rebuilt after a worker crash (BrokenProcessPool)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.generation = 0  # incremented when the pool is rebuilt
        self.capacity = workers
        self._pool = self._new()

    def _new(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_init_worker)

    def submit(self, fn: Callable, *args: Any) -> cf.Future:
        try:
            return self._pool.submit(fn, *args)
        except cf.process.BrokenProcessPool:
            self.rebuild()
            return self._pool.submit(fn, *args)

    def rebuild(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new()
        self.generation += 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Jobs as Dask tasks on the cluster behind ``address`` (or an existing Client)."""

    def __init__(self, address: str | None = None, client: Any = None) -> None:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover
            from modicseg.io.errors import ModicsegError

            raise ModicsegError("--scheduler needs dask.distributed: pip install 'modicseg[cluster]'") from None
        self.generation = 0
        self._own = client is None
        self.client = client if client is not None else Client(address, timeout="30s")
        self._executor = self.client.get_executor(pure=False)

    @property
    def capacity(self) -> int:
        """Threads of the cluster now (it may grow or shrink)."""
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # scheduler briefly unreachable: keep going
            return 1

    def submit(self, fn: Callable, *args: Any) -> cf.Future:
        return self._executor.submit(fn, *args)

    def rebuild(self) -> None:  # a lost worker is handled by the scheduler
        pass

    def shutdown(self) -> None:
        if self._own:
            self.client.close()


@contextlib.contextmanager
def make_executor(workers: int = 2, scheduler: str | None = None, client: Any = None) -> Iterator[Any]:
    """The executor for a batch: Dask when ``scheduler``/``client`` is given, else local."""
    if scheduler is not None or client is not None:
        executor: Any = DaskExecutor(scheduler, client)
    elif workers <= 0:
        executor = InlineExecutor()
    else:
        executor = LocalPool(workers)
    try:
        yield executor
    finally:
        executor.shutdown()

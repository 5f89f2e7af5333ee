"""Stopping cleanly: SIGINT (Ctrl-C), SIGTERM, SIGUSR1 and SIGUSR2 end the run at the end of the current
step, with a training record and a checkpoint. A second SIGINT interrupts at once (the checkpoint of the
step is then not written; the previous one stays).

Under SLURM, SIGUSR1/SIGUSR2 (sent before the time limit, e.g. with ``--signal=USR1@120``) also requeue
the job (:func:`spidrkit.training.distributed.requeue_slurm_job`). Data-loader workers are forked with
these signals blocked, so a SIGTERM sent to every process of a job does not kill them under the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch

logger = logging.getLogger("spidrkit.training")

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
REQUEUE_SIGNALS = ("SIGUSR1", "SIGUSR2")  # time-limit warnings: the job should come back


class StopSignals:
    """Context manager: SIGINT/SIGTERM/SIGUSR1/SIGUSR2 set ``received`` instead of killing the process
    (a second SIGINT raises ``KeyboardInterrupt``).

    Handlers are installed only from the main thread and restored on exit.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked child that inherited the handler: not its business
            return
        name = signal.Signals(signum).name
        if name == "SIGINT" and self.received == "SIGINT":
            raise KeyboardInterrupt
        if self.received is None:
            logger.warning("%s received: stopping with a checkpoint at the end of this step", name)
        self.received = name

    def __enter__(self) -> StopSignals:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@contextlib.contextmanager
def signals_blocked(names: tuple[str, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Block these signals in the calling thread (and in processes forked meanwhile, which inherit it)."""
    sigs = {getattr(signal, n) for n in names if hasattr(signal, n)}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def loader_batches(loader: Iterable[Any]) -> Iterator[Any]:
    """Iterate over a data loader without disturbing the training process's RNG or signals.

    - Every fetch runs on a copy of the CPU RNG: a DataLoader draws its base seed from the global RNG when
      it starts, so a resumed run (whose loader starts at the resume step) would otherwise draw dropout
      masks shifted against the uninterrupted run. (The data's own randomness, crops and masks, is keyed
      by the batch position and never drawn from the global RNG.)
    - The first fetch, which forks the worker processes, runs with the stop signals blocked: the workers
      inherit that mask, so the SIGTERM that SLURM sends to every process of a job does not kill them
      under the main process while it finishes its step and writes the checkpoint. (They still exit when
      the loader shuts them down or the main process dies.)
    """
    it = iter(loader)
    first = True
    while True:
        with torch.random.fork_rng(devices=[]), signals_blocked() if first else contextlib.nullcontext():
            try:
                item = next(it)
            except StopIteration:
                return
        first = False
        yield item

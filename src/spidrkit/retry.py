"""Retries with exponential backoff, for the network's transient failures (``docs/hub.md``).

:func:`with_retries` calls ``fn`` up to :data:`ATTEMPTS` times. An exception for which ``transient(e)`` is true
is retried after a pause that doubles each time (:data:`FIRST_DELAY_S`, then twice that, ...); anything else
is raised at once, and the last attempt's error is raised as it is. The downloads of the published weights
(:mod:`spidrkit.checkpoints.named`, resumed from their ``.part``) and of Hub repos (:mod:`spidrkit.hub`) use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

ATTEMPTS = 3  # tries in all (read at each call: a test may lower it)
FIRST_DELAY_S = 1.0  # the pause before the second try; doubled before each later one


def with_retries[T](fn: Callable[[], T], transient: Callable[[BaseException], bool], what: str, *,
                    attempts: int | None = None, first_delay: float | None = None,
                    sleep: Callable[[float], None] | None = None) -> T:
    """``fn()``, tried again after ``first_delay``, ``2 * first_delay``, ... seconds while it raises an exception
    that ``transient`` accepts, ``attempts`` tries in all (defaults: :data:`ATTEMPTS`, :data:`FIRST_DELAY_S`).
    Each retry is logged (``what`` names the operation); ``sleep`` defaults to :func:`time.sleep`."""
    attempts = ATTEMPTS if attempts is None else attempts
    delay = FIRST_DELAY_S if first_delay is None else first_delay
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            return fn()
        except Exception as e:
            if attempt >= attempts or not transient(e):
                raise
            logger.warning("%s failed (%s); try %d of %d in %g s", what, " ".join(str(e).split())[:300],
                           attempt + 1, attempts, delay)
            (sleep or time.sleep)(delay)
            delay *= 2
    raise AssertionError("unreachable")  # the loop returns or raises

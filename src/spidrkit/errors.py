"""What can go wrong, and the exit status each kind gives (README, "Exit codes").

Every error spidrkit raises on purpose derives from one of two bases:

- :class:`InputError`: what the user asked for cannot be done as asked (a bad config value, a file that
  is not a checkpoint, a manifest naming a missing file...). The command prints one line naming the input
  and the fix, and exits :data:`EXIT_USAGE`.
- :class:`TemporaryError`: the same command may succeed later (a lock held by another process, a peer
  gone): exit :data:`EXIT_TEMPFAIL`.

An ``OSError`` (disk full, unreadable file, permission) exits :data:`EXIT_IO` with one line naming the
path; writes are atomic, so nothing partial is left under a final name. SIGINT exits
:data:`EXIT_INTERRUPTED`, SIGTERM :data:`EXIT_TERMINATED`, after saving what can be saved. Anything else
is a defect of spidrkit: :data:`EXIT_SOFTWARE`, with the traceback under ``--debug``.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator

EXIT_OK = 0
EXIT_USAGE = 2  # a user error: bad input, bad option, bad config
EXIT_DIVERGED = 3  # pretraining stopped on too many non-finite losses in a row
EXIT_SOFTWARE = 70  # an internal error (EX_SOFTWARE)
EXIT_IO = 74  # an I/O fault: disk full, unreadable, permission denied (EX_IOERR)
EXIT_TEMPFAIL = 75  # a temporary failure: a lock held by another process (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # SIGINT (128 + 2)
EXIT_TERMINATED = 143  # SIGTERM (128 + 15)


class InputError(ValueError):
    """A user error: the message names the input and the fix (exit status 2)."""


class Diverged(RuntimeError):
    """Training stopped on non-finite losses or weights (pretraining and the unit LM alike); the message names
    the last good checkpoint (exit status 3, :data:`EXIT_DIVERGED`)."""


class TemporaryError(RuntimeError):
    """A failure that a later run of the same command may not meet (exit status 75)."""


class LockHeldError(TemporaryError):
    """Another process holds the lock of an output (a run folder, a units merge)."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM by commands without a handler of their own, so that ``finally``
    blocks run before the process exits with status 143."""


@contextlib.contextmanager
def naming(source: object) -> Iterator[None]:
    """:class:`InputError` raised in the block names ``source`` (the file being read): ``SOURCE: message``, of
    the same class, unless the message names it already."""
    try:
        yield
    except InputError as e:
        if str(source) in str(e):
            raise
        raise type(e)(f"{source}: {e}") from e


def did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean 'x'?"`` naming the closest of ``known`` to a mistyped ``name`` (a subcommand, a
    config key, an option), shown after ``prefix`` (``"optim."``), or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {prefix + close[0]!r}?" if close else ""

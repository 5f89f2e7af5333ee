"""Named pretrained weights: the authors' published checkpoints, downloaded once into a cache and verified.

``spidrkit.load("spidr_base")`` (and ``--model spidr_base``) fetches the file of :data:`NAMED_WEIGHTS` into
the cache folder (:func:`cache_dir`: ``$SPIDRKIT_CACHE``, else ``$XDG_CACHE_HOME/spidrkit``, else
``~/.cache/spidrkit``), then loads it like any local file. How:

- **Atomic, resumable**: the bytes go to ``NAME.part`` (an interrupted download resumes from there with an
  HTTP ``Range`` request when the server honours it, else restarts), then the file is renamed to its final
  name: a final name is always a whole file. One process downloads a given file at a time
  (``NAME.lock``, :func:`spidrkit.io.hold_lock`; another one waiting on it is told to try again later).
- **Verified**: a digest pinned in :data:`PUBLISHED_SHA256` is checked on the ``.part`` *before* it gets its
  final name: a mismatch deletes the download and is a :class:`CheckpointError` naming the URL and both
  hashes. None of the three is pinned yet (spidrkit has not had the released files to hash: see
  ``docs/hub.md``); until one is, the SHA-256 of the file is recorded at its first download in
  ``weights.json`` beside it (trust on first use). Either way it is checked at every later load; a mismatch
  is a :class:`CheckpointError` naming the file and both hashes ("delete it to download again"). A file
  placed in the cache by hand is recorded the first time it is used.
- **Retried**: a transient failure (connection refused, DNS failure, timeout, a server error, a download cut
  short) is tried again with exponential backoff (:mod:`spidrkit.retry`), resuming from the ``.part``.
- **Offline**: when the tries are spent, no network is a :class:`WeightsUnavailableError` (a
  :class:`~spidrkit.errors.TemporaryError`: exit 75, "try again later") whose one line gives the URL, the
  error, and where to place the file by hand. An HTTP client error (404: the release moved) is a
  :class:`CheckpointError` (exit 2), not retried: retrying will not help.
- ``$SPIDRKIT_WEIGHTS_URL`` (or ``base_url=``) replaces the folder of every URL (a mirror; the tests'
  local server): the file name stays the release's.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.errors import TemporaryError
from spidrkit.io import file_sha256, hold_lock, write_json_atomic
from spidrkit.retry import with_retries

RECORD_NAME = "weights.json"
TIMEOUT_SECONDS = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class NamedWeights:
    """One published checkpoint: where it is, which model it holds, and its SHA-256 when pinned."""

    url: str
    variant: str
    description: str
    sha256: str | None = None  # full hex digest; None: recorded at the first download

    def filename(self, name: str) -> str:
        """The cache file: the name, with the suffix of the released file."""
        return name + Path(self.url).suffix


# The full SHA-256 of each released file, checked before a download is moved into the cache. None: not known
# to spidrkit yet (recorded at the first download instead); pin it here once hashed from the release.
PUBLISHED_SHA256: dict[str, str | None] = {
    "spidr_base": None,
    "dinosr_base_reproduced": None,
    "dinosr_base_original": None,
}
_FAIR = "https://dl.fbaipublicfiles.com/shared/devai/assets/models"
NAMED_WEIGHTS: dict[str, NamedWeights] = {
    "spidr_base": NamedWeights(f"{_FAIR}/spidr_base.pt", "spidr", "SpidR Base (LibriSpeech 960 h), the authors'",
                               PUBLISHED_SHA256["spidr_base"]),
    "dinosr_base_reproduced": NamedWeights(f"{_FAIR}/dinosr_base_reproduced.pt", "dinosr",
                                           "DinoSR Base reproduced by the SpidR authors",
                                           PUBLISHED_SHA256["dinosr_base_reproduced"]),
    "dinosr_base_original": NamedWeights("https://data.csail.mit.edu/placesaudio/dinosr/dinosr.ckpt", "dinosr",
                                         "the original DinoSR Base (fairseq checkpoint)",
                                         PUBLISHED_SHA256["dinosr_base_original"]),
}


class WeightsUnavailableError(TemporaryError):
    """The published weights cannot be downloaded now (no network, a server error): try again later, or
    place the file in the cache by hand."""


def cache_dir() -> Path:
    """``$SPIDRKIT_CACHE``, else ``$XDG_CACHE_HOME/spidrkit``, else ``~/.cache/spidrkit``."""
    if os.environ.get("SPIDRKIT_CACHE"):
        return Path(os.environ["SPIDRKIT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "spidrkit"


def weights_url(name: str, base_url: str | None = None) -> str:
    """The URL of a named checkpoint; ``base_url`` (else ``$SPIDRKIT_WEIGHTS_URL``) replaces its folder."""
    url = NAMED_WEIGHTS[name].url
    base = base_url or os.environ.get("SPIDRKIT_WEIGHTS_URL")
    return f"{base.rstrip('/')}/{url.rsplit('/', 1)[1]}" if base else url


def _sha256(path: Path) -> str:
    return file_sha256(path, length=64)


def _records(folder: Path) -> dict[str, dict]:
    path = folder / RECORD_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable record of the downloaded weights ({e}); delete it (the "
                              "hashes are recorded again at the next load)") from e
    return data if isinstance(data, dict) else {}


def _record(folder: Path, filename: str, sha: str, url: str, how: str) -> None:
    records = _records(folder)
    records[filename] = {"sha256": sha, "url": url, "how": how}
    write_json_atomic(folder / RECORD_NAME, records)


def _verify(path: Path, spec: NamedWeights, url: str) -> None:
    """The file's SHA-256 against the pinned or recorded one (recorded now when there is none)."""
    sha = _sha256(path)
    recorded = _records(path.parent).get(path.name, {}).get("sha256")
    expected = spec.sha256 or recorded
    if expected is None:
        _record(path.parent, path.name, sha, url, "placed by hand (recorded at its first use)")
    elif sha != expected:
        where = "published" if spec.sha256 else f"recorded at its download in {path.parent / RECORD_NAME}"
        raise CheckpointError(
            f"{path}: SHA-256 {sha} differs from {expected} ({where}): the file is corrupt or was replaced; "
            "delete it to download again"
        )


def _offline(url: str, error: object, target: Path) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"cannot download {url} ({error}); without network, download it elsewhere and place it at {target} "
        f"(or set SPIDRKIT_CACHE to the folder holding {target.name})"
    )


def _check_part(part: Path, url: str, expected: str | None) -> None:
    """The finished ``.part`` against the pinned SHA-256: a mismatch deletes it (it never gets a final name)."""
    if expected is None:
        return
    sha = _sha256(part)
    if sha != expected:
        part.unlink()
        raise CheckpointError(f"{url}: the download's SHA-256 {sha} differs from the published {expected}; it was "
                              "deleted: the server gave another file (check SPIDRKIT_WEIGHTS_URL), try again later")


def _download(url: str, target: Path, progress: bool, expected: str | None = None) -> None:
    """``url`` -> ``target`` through ``target.part`` (resumed when the server honours ``Range``), checked against
    ``expected`` (a pinned SHA-256), renamed."""
    from spidrkit.progress import progress_bar

    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part is already whole (or longer): start again
            part.unlink()
            return _download(url, target, progress, expected)
        if 400 <= e.code < 500:
            raise CheckpointError(f"cannot download {url}: HTTP {e.code} {e.reason}; place the file by hand "
                                  f"at {target}") from e
        raise _offline(url, f"HTTP {e.code} {e.reason}", target) from e
    except (urllib.error.URLError, OSError) as e:
        raise _offline(url, getattr(e, "reason", e), target) from e
    with response:
        resumed = have and response.status == 206
        total = response.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total is not None else None
        bar = progress_bar(total, f"downloading {target.name}", "B", progress, initial=have if resumed else 0,
                           unit_scale=True)
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise _offline(url, f"interrupted after {part.stat().st_size} bytes: {e}; the next load resumes",
                           target) from e
        finally:
            bar.close()
    if total is not None and part.stat().st_size != total:
        raise _offline(url, f"got {part.stat().st_size} of {total} bytes; the next load resumes", target)
    _check_part(part, url, expected)
    os.replace(part, target)


def fetch_weights(name: str, base_url: str | None = None, progress: bool = True) -> Path:
    """The local file of the named checkpoint ``name`` (:data:`NAMED_WEIGHTS`): downloaded into
    :func:`cache_dir` the first time (transient failures retried with backoff; checked against its pinned
    SHA-256 before it is moved there, else its SHA-256 recorded), verified every time."""
    if name not in NAMED_WEIGHTS:
        raise CheckpointError(f"no published weights named {name!r}; known: {', '.join(NAMED_WEIGHTS)}")
    spec = NAMED_WEIGHTS[name]
    url = weights_url(name, base_url)
    folder = cache_dir()
    target = folder / spec.filename(name)
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with hold_lock(folder / (target.name + ".lock"), what=f"the download of {target}"):
            if not target.is_file():  # (another process may have finished it meanwhile)
                with_retries(lambda: _download(url, target, progress, spec.sha256),
                             lambda e: isinstance(e, WeightsUnavailableError), f"downloading {url}")
                # recorded now (already checked when pinned), verified from the next load on
                _record(folder, target.name, spec.sha256 or _sha256(target), url, "downloaded")
                return target
    _verify(target, spec, url)
    return target

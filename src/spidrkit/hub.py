"""The Hugging Face Hub, both ways: a model repo by id into the local cache, and a folder up to a repo
(``docs/hub.md``).

A **repo reference** is ``OWNER/NAME`` (a model repo), optionally ``@REVISION`` (a branch, a tag or a commit;
default ``main``), or the same behind ``hf://`` (``hf://OWNER/NAME@v1``), which is never taken for a local
path. Without ``hf://``, text that looks like a path (:func:`looks_like_path`: it starts with ``./``, ``../``,
``/`` or ``~``, or its parent folder exists) is a path, and one that does not exist is reported as such
(:func:`missing_path`), not as a Hub miss.

Downloads go through ``huggingface_hub`` (:func:`snapshot`): only the files a loader needs (``allow``
patterns), into the Hugging Face cache, reused offline. The environment is read at each call, not at import:
``HF_ENDPOINT`` (another Hub, a mirror, the tests' stand-in), ``HF_HUB_CACHE`` (else ``HF_HOME/hub``),
``HF_HUB_OFFLINE=1`` (the cache only), ``HF_TOKEN`` (private and gated repos; uploads). A transient failure (no
connection, a timeout, HTTP 429 or 5xx) is retried with backoff (:mod:`spidrkit.retry`); what remains is a
:class:`HubError` (exit 2): one line naming the repo and what to do.

Uploads (:func:`upload`): the repo is created when missing (``private`` applies then), and the folder is
committed to its main branch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from spidrkit.errors import InputError
from spidrkit.lazy import require
from spidrkit.retry import with_retries

PREFIX = "hf://"
DEFAULT_REVISION = "main"
TOKEN_HINT = "set HF_TOKEN to a token of yours (https://huggingface.co/settings/tokens)"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".toml", ".json", ".csv", ".tsv", ".txt")
_TRUE = {"1", "ON", "YES", "TRUE"}
# class names of the network failures of httpx / requests / the standard library (none is imported here)
_TRANSPORT = {"TransportError", "TimeoutException", "ConnectionError", "Timeout", "TimeoutError"}


class HubError(InputError):
    """A Hub repo that cannot be had as asked: no such repo or revision, no access, or no network and not in
    the cache; the message names the repo and what to do."""


@dataclass(frozen=True)
class HubRef:
    """A model repo on the Hub and the revision asked for (``None``: ``main``)."""

    repo_id: str
    revision: str | None = None

    def uri(self, commit: str | None = None) -> str:
        """``hf://OWNER/NAME@COMMIT``: the commit the files came from (else the revision asked for)."""
        at = commit or self.revision
        return f"{PREFIX}{self.repo_id}" + (f"@{at}" if at else "")

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def looks_like_path(text: str) -> bool:
    """Whether ``text`` is meant as a local path: it starts with ``./``, ``../``, ``/`` or ``~`` (or has a
    backslash), or the folder it names a child of exists."""
    if text.startswith(("./", "../", "/", "~")) or "\\" in text:
        return True
    parent = Path(text).parent
    return parent != Path(".") and parent.is_dir()


def missing_path(text: str) -> str:
    """The message of a local path that does not exist."""
    return f"no such file or folder: {text}"


def hub_ref(text: str, revision: str | None = None) -> HubRef | None:
    """The repo reference of ``text`` (``OWNER/NAME[@REVISION]``, or the same behind ``hf://``), ``revision``
    when given; ``None`` when ``text`` is not one (a path, a file name). :class:`HubError` for a malformed
    ``hf://`` reference or two different revisions."""
    explicit = text.startswith(PREFIX)
    body = text[len(PREFIX):] if explicit else text
    repo_id, at, rev = body.partition("@")
    if not explicit and looks_like_path(repo_id):
        return None
    if not _REPO_ID.fullmatch(repo_id) or repo_id.lower().endswith(_FILE_SUFFIXES) or (at and not rev):
        if explicit:
            raise HubError(f"{text}: not a Hub repo id; expected hf://OWNER/NAME or hf://OWNER/NAME@REVISION")
        return None
    if rev and revision and rev != revision:
        raise HubError(f"{text}: two revisions, {rev!r} in the id and {revision!r}; give one")
    return HubRef(repo_id, rev or revision)


# ------------------------------------------------------------------------------------------ environment
def _hf(module: str = "huggingface_hub") -> ModuleType:
    """``huggingface_hub`` (or one of its modules); :class:`~spidrkit.lazy.MissingExtra` naming the ``hf`` extra
    when it is not installed."""
    return require(module, "a Hugging Face Hub repo")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set now or when ``huggingface_hub`` was imported."""
    constants = _hf("huggingface_hub.constants")

    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or bool(constants.HF_HUB_OFFLINE)


def cache_folder() -> Path:
    """The Hugging Face cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    constants = _hf("huggingface_hub.constants")

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def endpoint() -> str:
    """``$HF_ENDPOINT``, else the Hub's own address."""
    constants = _hf("huggingface_hub.constants")

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


# ------------------------------------------------------------------------------------------ errors
def _chain(e: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while e is not None and all(e is not x for x in out):
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _status(e: BaseException) -> int | None:
    status = getattr(getattr(e, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def transient(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is one a later try may not meet: no connection, a timeout, HTTP 429
    or 5xx. Offline mode is not."""
    for e in _chain(error):
        names = {c.__name__ for c in type(e).__mro__}
        if "OfflineModeIsEnabled" in names:
            return False
        status = _status(e)
        if status is not None and (status == 429 or status >= 500):
            return True
        if names & _TRANSPORT:
            return True
    return False


def _reason(error: BaseException) -> str:
    root = _chain(error)[-1]
    text = " ".join(str(root).split())
    return f"{type(root).__name__}: {text[:200]}" if text else type(root).__name__


def _download_error(ref: HubRef, error: Exception) -> HubError | None:
    """The one-line :class:`HubError` of a failed download, ``None`` for an error that is not the Hub's."""
    errors = _hf("huggingface_hub.errors")

    revision = ref.revision or DEFAULT_REVISION
    if isinstance(error, errors.RevisionNotFoundError):
        return HubError(f"{ref.repo_id}: no revision {revision!r} on the Hugging Face Hub ({endpoint()}); check the "
                        "branch, tag or commit")
    if isinstance(error, errors.GatedRepoError):
        return HubError(f"{ref.repo_id}: a gated repo on the Hugging Face Hub: accept its conditions on its page, "
                        f"then {TOKEN_HINT}")
    if isinstance(error, errors.RepositoryNotFoundError) or _status(error) in (401, 403):
        return HubError(f"{ref.repo_id}: no local path of that name, and no model repo on the Hugging Face Hub "
                        f"({endpoint()}) that this token can read (a private repo: {TOKEN_HINT}); check the id, or "
                        "pass a local path")
    if offline():
        return HubError(f"{ref}: not in the Hugging Face cache ({cache_folder()}) and HF_HUB_OFFLINE is set: unset "
                        "it to download, or pass a local path")
    if isinstance(error, errors.LocalEntryNotFoundError | errors.HfHubHTTPError) or transient(error):
        return HubError(f"{ref}: cannot reach the Hugging Face Hub ({endpoint()}) and not in the cache "
                        f"({_reason(error)}); check the network (or HF_ENDPOINT), or pass a local path")
    return None


# ------------------------------------------------------------------------------------------ both ways
def snapshot(ref: HubRef, allow: list[str]) -> Path:
    """The local folder of the files of ``ref`` that match ``allow`` (``fnmatch`` patterns), downloaded into the
    cache when needed (only the cache when offline). The folder's name is the commit (:func:`commit_of`)."""
    snapshot_download = _hf().snapshot_download

    def once() -> str:
        return snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=str(cache_folder()),
                                 endpoint=endpoint(), local_files_only=offline(), allow_patterns=allow)

    try:
        return Path(with_retries(once, transient, f"downloading {ref} from the Hugging Face Hub"))
    except Exception as e:
        mapped = _download_error(ref, e)
        if mapped is None:
            raise
        raise mapped from e


def commit_of(folder: Path) -> str:
    """The commit a :func:`snapshot` folder holds (the cache names the folder after it)."""
    return Path(folder).name


def _upload_error(repo_id: str, error: Exception) -> HubError | None:
    errors = _hf("huggingface_hub.errors")

    if isinstance(error, errors.LocalTokenNotFoundError) or _status(error) in (401, 403):
        return HubError(f"{repo_id}: no write access on the Hugging Face Hub ({endpoint()}): {TOKEN_HINT} "
                        "with write permission, for an owner you belong to")
    if isinstance(error, errors.HfHubHTTPError) or transient(error):
        return HubError(f"{repo_id}: the upload to the Hugging Face Hub ({endpoint()}) failed ({_reason(error)}); "
                        "check the id and the network, then push again")
    return None


def upload(folder: str | os.PathLike, repo_id: str, files: list[str], *, private: bool = False,
           message: str = "spidrkit push") -> str:
    """Create the model repo ``repo_id`` when it is missing (``private`` then), commit the ``files`` of ``folder``
    (names or ``fnmatch`` patterns) to its main branch; returns the commit's address. The token: ``HF_TOKEN``
    (or a saved login)."""
    HfApi = _hf().HfApi

    api = HfApi(endpoint=endpoint())

    def once() -> str:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=message,
                                 allow_patterns=files)
        return str(getattr(info, "commit_url", None) or f"{endpoint()}/{repo_id}")

    try:
        return with_retries(once, transient, f"uploading {folder} to {repo_id}")
    except Exception as e:
        mapped = _upload_error(repo_id, e)
        if mapped is None:
            raise
        raise mapped from e

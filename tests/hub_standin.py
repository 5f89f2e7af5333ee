"""A stand-in for the Hugging Face Hub on 127.0.0.1 (no network): model repos served from local folders.

It answers what ``huggingface_hub``'s ``snapshot_download`` / ``hf_hub_download`` ask of a model repo:

- ``GET /api/models/OWNER/NAME/revision/REV``: ``{"id", "sha", "siblings"}`` (the commit of a branch or tag);
- ``GET /api/models/OWNER/NAME/tree/REV?recursive=...``: the files, ``[{"type": "file", "path", "size", "oid"}]``;
- ``HEAD|GET /OWNER/NAME/resolve/REV/PATH``: the file, with ``ETag``, ``X-Repo-Commit`` and ``Content-Length``.

An unknown repo is HTTP 404 with ``X-Error-Code: RepoNotFound``, an unknown revision ``RevisionNotFound``, an
unknown file ``EntryNotFound`` (the codes ``huggingface_hub`` turns into its errors). ``fail = N`` answers the next
N requests with HTTP 503. Every request is recorded (method, path).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit


class StandInHub:
    def __init__(self) -> None:
        self.refs: dict[str, dict[str, str]] = {}  # repo id -> {branch or tag: commit}
        self.commits: dict[str, dict[str, bytes]] = {}  # commit -> {path: bytes}
        self.requests: list[tuple[str, str]] = []
        self.fail = 0
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> StandInHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, repo_id: str, folder: str | Path, revision: str = "main") -> str:
        """Serve the files of ``folder`` (recursively) as ``repo_id`` at ``revision``; returns the commit."""
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        h = hashlib.sha1(f"{repo_id}@{revision}".encode())
        for name, data in files.items():
            h.update(name.encode() + hashlib.sha256(data).digest())
        commit = h.hexdigest()
        self.commits[commit] = files
        self.refs.setdefault(repo_id, {})[revision] = commit
        return commit


def _json(handler: http.server.BaseHTTPRequestHandler, data: object) -> None:
    body = json.dumps(data).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command == "GET":
        handler.wfile.write(body)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def log_message(self, *args) -> None:
        pass

    def _error(self, status: int, code: str | None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _commit(self, repo: str, revision: str) -> str | None:
        hub = self.server.hub
        refs = hub.refs[repo]
        if revision in refs:
            return refs[revision]
        return revision if revision in hub.commits and revision in refs.values() else None

    def _answer(self) -> None:
        hub = self.server.hub
        path = urlsplit(self.path).path
        hub.requests.append((self.command, path))
        if hub.fail:
            hub.fail -= 1
            return self._error(503, None)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        api = parts[:2] == ["api", "models"]
        repo = "/".join(parts[2:4] if api else parts[:2])
        if repo not in hub.refs:
            return self._error(404, "RepoNotFound")
        kind, revision, rest = (parts[4], parts[5] if len(parts) > 5 else "main", []) if api else (
            parts[2], parts[3], parts[4:])
        commit = self._commit(repo, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound")
        files = hub.commits[commit]
        if api and kind == "revision":
            return _json(self, {"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in files]})
        if api and kind == "tree":
            return _json(self, [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                                for f, d in files.items()])
        name = "/".join(rest)
        if kind != "resolve" or name not in files:
            return self._error(404, "EntryNotFound")
        data = files[name]
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)

"""Shared Hypothesis strategies and checks for the fuzzed readers (``tests/test_fuzz_*.py``).

Every reader of a user file must answer a malformed file with a valid result or an
:class:`~spidrkit.errors.InputError` whose message names the file (exit status 2), never another exception
(exit status 70). The inputs are built from realistic valid files (the seeds), so that most examples stay
close to what the reader expects and reach its deeper checks:

- text mutations: a token replaced by a nasty value (:data:`NASTY`: NaN, huge numbers, NUL, separators...)
  or by random text, a token deleted, a line deleted or duplicated;
- the text encoded as UTF-8, UTF-8 with a BOM, UTF-16, Latin-1, with CRLF line ends;
- byte mutations: truncated, random bytes inserted, a byte overwritten;
- random bytes.

Examples per reader: ``SPIDRKIT_FUZZ_EXAMPLES`` (default 500, the CI count); the runs are derandomized (one
fixed seed, the same examples every run). A longer run: ``SPIDRKIT_FUZZ_EXAMPLES=20000 pytest
tests/test_fuzz_*.py`` (README, "Tests").
"""

from __future__ import annotations

import atexit
import copy
import csv
import datetime as dt
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from spidrkit.errors import InputError

EXAMPLES = int(os.environ.get("SPIDRKIT_FUZZ_EXAMPLES", "500"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])

BOM = b"\xef\xbb\xbf"
NASTY = (
    "", " ", "-1", "-0", "0", "1", "1.5", "1e400", "-1e400", "nan", "NaN", "inf", "-inf", "Infinity", "9" * 30,
    "9" * 5000, "0x1f", "1_000", "\u0661\u0662", "\uff11", "\x00", "\ufeff", "\u2028", "\x85", "\r", "\n", "\t",
    '"', "'", ",", "#", "*", "1*0", "1*-1", "2*2*2", "null", "true", "false", "[]", "{}", "[[[[", "]", "}", "=",
    "\u00e9", "a b", "..", "/", "\\", "-", "[" * 3000, "x" * 200_000,
)
SHORT_NASTY = tuple(x for x in NASTY if len(x) < 100)
_TOKEN = re.compile(r"(\s+|[,\t:=\[\]{}\"'*])")


# ------------------------------------------------------------------------------------------------ strategies
_NEW_TOKEN = st.one_of(st.sampled_from(NASTY), st.text(max_size=6))
_ENCODINGS = st.sampled_from(("utf-8",) * 6 + ("bom", "crlf", "utf-16", "latin-1"))
_BYTE_EDITS = st.sampled_from(("truncate", "insert", "overwrite"))
_RANDOM_BYTES = st.binary(max_size=300)


def _replace_token(draw, text: str, new: st.SearchStrategy[str] = _NEW_TOKEN) -> str:
    tokens = _TOKEN.split(text)
    i = draw(st.integers(0, len(tokens) - 1))
    tokens[i] = draw(new)
    return "".join(tokens)


def _edit_line(draw, text: str) -> str:
    lines = text.split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    if draw(st.booleans()):
        return "\n".join(lines[:i] + lines[i + 1:])
    return "\n".join(lines[: i + 1] + lines[i:])


def _encode(draw, text: str) -> bytes:
    how = draw(_ENCODINGS)
    if how == "crlf":
        text = text.replace("\n", "\r\n")
    if how in ("utf-16", "latin-1"):
        return text.encode(how, errors="replace")
    data = text.encode("utf-8", errors="surrogatepass")
    return BOM + data if how == "bom" else data


def _mutate_bytes(draw, data: bytes) -> bytes:
    i = draw(st.integers(0, len(data)))
    op = draw(_BYTE_EDITS)
    if op == "truncate":
        return data[:i]
    if op == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
    return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]


def mutated_text(seeds: Sequence[str], max_edits: int = 3) -> st.SearchStrategy[str]:
    """One of ``seeds`` with up to ``max_edits`` token or line edits (none: the valid seed itself)."""
    seed = st.sampled_from(seeds)
    edits = st.integers(0, max_edits)

    @st.composite
    def text(draw) -> str:
        out = draw(seed)
        for _ in range(draw(edits)):
            out = _replace_token(draw, out) if draw(st.integers(0, 3)) else _edit_line(draw, out)
        return out

    return text()


def mutated_bytes(seeds: Sequence[str], text: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[bytes]:
    """A file's bytes: a mutated seed (or a draw of ``text``), encoded one way or another, maybe with a few
    byte edits; or random bytes."""
    edited = mutated_text(seeds)
    body = edited if text is None else st.one_of(edited, text, text)

    @st.composite
    def data(draw) -> bytes:
        if draw(st.integers(0, 9)) == 0:
            return draw(_RANDOM_BYTES)
        out = _encode(draw, draw(body))
        if draw(st.integers(0, 6)) == 0:
            for _ in range(draw(st.integers(1, 3))):
                out = _mutate_bytes(draw, out)
        return out

    return data()


# what an .npy header may say wrongly: dtypes numpy refuses without pickle or that are not floats, shapes
_NPY_TOKENS = st.one_of(st.sampled_from((
    "'<f8'", "'>f4'", "'|O'", "'<c8'", "'|V4'", "'<U2'", "'<M8[s]'", "'|b1'", "'<f2'", "0", "-1", "99999999999",
    "()", "(0,)", "(1,)", "True", "1.5", "None", "[3]", "(2, 2, 2)",
)), _NEW_TOKEN)


def mutate_npy(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` (an ``.npy`` file, or any binary file) with a token of its ``.npy`` header replaced (the header
    length kept consistent, so that numpy parses the edited header) and/or a few byte edits."""

    @st.composite
    def edited(draw) -> bytes:
        out = data
        if out.startswith(b"\x93NUMPY\x01") and draw(st.booleans()):
            end = out.index(b"\n", 10) + 1
            text = _replace_token(draw, out[10:end].decode("latin-1"), _NPY_TOKENS).rstrip("\n") + "\n"
            header = text.encode("latin-1", errors="replace")[:65535]
            out = out[:8] + len(header).to_bytes(2, "little") + header + out[end:]
        for _ in range(draw(st.integers(0, 2))):
            out = _mutate_bytes(draw, out)
        return out

    return edited()


# JSON values with nasty leaves: NaN, infinities, huge and negative numbers, odd strings, nesting
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from((10**400, -(10**400))),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SHORT_NASTY), st.text(max_size=8),
)
# values that break the checks of a JSON field: non-finite, huge, negative, fractional, of the wrong type
JSON_NASTY = st.sampled_from((
    math.nan, math.inf, -math.inf, -1, -0.0, 1.5, 1e300, 10**400, -(10**400), 2**63, 2**64, -(2**63) - 1, True,
    False, None, "", "1", "-1", "nan", "1e400", [], {}, [1, 2], [[1], [2, 3]], [1.5], ["1"], [True], {"a": 1},
))
# whole JSON lines that break a parser: nesting past the recursion limit, too many digits, bare constants
JSON_NASTY_LINES = st.sampled_from(("[" * 3000, '{"a":' * 2000, "9" * 5000, "NaN", "-Infinity", "[1e400]", "{", '"'))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                    max_leaves=6)


def mutated_records(valid: Sequence[dict[str, Any]], values: st.SearchStrategy[Any],
                    keys: Sequence[str] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """One of the ``valid`` records with one or two values replaced by draws of ``values``, a key dropped, or
    a key of ``keys`` added (so that most records pass the reader's first checks and reach the next)."""
    record = st.sampled_from(valid)
    names = st.sampled_from(sorted({k for r in valid for k in r}))
    extra = st.sampled_from(keys) if keys else names

    @st.composite
    def edited(draw) -> dict[str, Any]:
        out = copy.deepcopy(draw(record))
        for _ in range(draw(st.integers(1, 2))):
            op = draw(st.integers(0, 5))
            if op == 0:
                out.pop(draw(names), None)
            else:
                out[draw(extra if op == 1 else names)] = copy.deepcopy(draw(values))
        return out

    return edited()


# TOML values that break a config key's checks (tomllib reads datetimes, huge integers, nan and inf as well)
TOML_NASTY = st.sampled_from((
    math.nan, math.inf, -math.inf, -1, 0, 1, 1.5, 1e300, 10**30, -(10**30), True, False, "", "x", "nan", "1", [],
    [1], [1, 2], [0.5, 2.0], [[1]], ["a"], [1.5, "a"], {"a": 1}, {}, dt.datetime(2020, 1, 1), dt.date(2020, 1, 1),
))


def toml_text(doc: dict[str, Any]) -> str:
    """``doc`` as TOML (keys quoted, nested dicts as tables, dicts in lists inline): what the fuzz tests need."""
    plain = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    out = [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in plain.items()]
    for k, v in doc.items():
        if isinstance(v, dict):
            out.append(_toml_table([str(k)], v))
    return "\n".join(out) + "\n"


def _toml_table(path: list[str], table: dict[str, Any]) -> str:
    lines = ["[" + ".".join(json.dumps(p) for p in path) + "]"]
    lines += [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    lines += [_toml_table([*path, str(k)], v) for k, v in table.items() if isinstance(v, dict)]
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int | dt.date):
        return v.isoformat() if isinstance(v, dt.date) else str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def mutated_tables(valid: Sequence[dict[str, Any]], values: st.SearchStrategy[Any],
                   sections: Sequence[str], keys: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """One of the ``valid`` documents (section -> key -> value) with one to three edits: a value of a section
    replaced by a draw of ``values`` (the key one of ``keys``, known or not), a section replaced by a value or
    dropped, a top-level key set (``preset``, ``variant``...)."""
    doc = st.sampled_from(valid)
    section = st.sampled_from(sections)
    key = st.sampled_from(keys)

    @st.composite
    def edited(draw) -> dict[str, Any]:
        out = copy.deepcopy(draw(doc))
        for _ in range(draw(st.integers(1, 3))):
            name, op = draw(section), draw(st.integers(0, 5))
            if op == 0:
                out[name] = copy.deepcopy(draw(values))  # (never edit the shared constants of a strategy)
            elif op == 1:
                out.pop(name, None)
            else:
                table = out.setdefault(name, {})
                if isinstance(table, dict):
                    table[draw(key)] = copy.deepcopy(draw(values))
        return out

    return edited()


CSV_CELLS = st.one_of(st.sampled_from(SHORT_NASTY), st.text(max_size=5))


def csv_tables(rows: Sequence[Sequence[str]]) -> st.SearchStrategy[str]:
    """CSV text written by the csv module: ``rows`` (the header first) with one to three cells replaced by nasty
    text, inserted (a row longer than the header) or removed (shorter), the header's included."""

    @st.composite
    def table(draw) -> str:
        out = [list(r) for r in rows]
        for _ in range(draw(st.integers(1, 3))):
            row = out[draw(st.integers(0, len(out) - 1))]
            i = draw(st.integers(0, max(0, len(row) - 1)))
            op = draw(st.integers(0, 4))
            if op == 0:
                row.insert(i, draw(CSV_CELLS))
            elif op == 1 and row:
                row.pop(i)
            elif row:
                row[i] = draw(CSV_CELLS)
        buf = io.StringIO()
        csv.writer(buf).writerows(out)
        return buf.getvalue()

    return table()


# ------------------------------------------------------------------------------------------------ checks
class Scratch:
    """One folder for the examples of a test: each example overwrites the same files."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="spidrkit-fuzz-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode("utf-8", errors="surrogatepass")
        path.unlink(missing_ok=True)  # a new file: truncating one flushes it to disk on ext4 (ms per example)
        path.write_bytes(data)
        return path


def outcome(read: Callable[[], Any], *names: str | os.PathLike, error: type[InputError] = InputError) -> Any:
    """The result of ``read()``, or ``None`` when it raised ``error`` (an :class:`InputError` subclass) whose
    message names one of ``names`` (a file); any other exception fails the test."""
    try:
        return read()
    except error as e:
        message = str(e)
        assert any(str(n) in message for n in names), f"the message does not name the file: {message[:300]!r}"
        return None

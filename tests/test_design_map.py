"""docs/design.md's package table names every package and module of src/spidrkit (a map that is true)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "spidrkit"


def layout_rows(text: str) -> dict[str, str]:
    """``{package: its modules cell}`` of the "Package layout" table."""
    section = text.split("## Package layout", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `(spidrkit[\w.]*)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def missing_modules(rows: dict[str, str], src: Path = SRC) -> list[str]:
    """Modules of ``src`` whose package has no row, or whose name is not in backticks in that row
    (``__init__`` and ``__main__`` of a package count only where the package has other modules)."""
    missing = []
    for path in sorted(src.rglob("*.py")):
        package = ".".join(["spidrkit", *path.parent.relative_to(src).parts])
        name = path.stem
        if name == "__init__":
            continue
        if package not in rows or (f"`{name}`" not in rows[package] and not (
                name == "__main__" and "`__main__`" in rows.get(package, ""))):
            missing.append(f"{package}.{name}")
    return missing


def test_every_module_of_the_package_is_on_the_map():
    rows = layout_rows((ROOT / "docs" / "design.md").read_text())
    assert not missing_modules(rows), "modules missing from docs/design.md's layout table: " + ", ".join(
        missing_modules(rows))
    packages = {".".join(["spidrkit", *p.parent.relative_to(SRC).parts]) for p in SRC.rglob("*.py")}
    empty = {p for p in packages if not any(q.parent == SRC.joinpath(*p.split(".")[1:]) and q.stem != "__init__"
                                             for q in SRC.rglob("*.py"))}
    assert set(rows) == packages - empty, f"rows for packages that do not exist: {set(rows) - packages}"


def test_the_checker_finds_a_module_missing_from_its_row(tmp_path):
    (tmp_path / "a").mkdir()
    for f in ("a/__init__.py", "a/x.py", "a/y.py", "top.py"):
        (tmp_path / f).write_text("")
    rows = {"spidrkit": "`top`", "spidrkit.a": "`x` (the x)"}
    assert missing_modules(rows, tmp_path) == ["spidrkit.a.y"]
    assert missing_modules({"spidrkit": "`top`"}, tmp_path) == ["spidrkit.a.x", "spidrkit.a.y"]

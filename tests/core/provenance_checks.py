"""Small helpers shared by the provenance tests: pick findings and manifest rows."""

from __future__ import annotations

from pathlib import Path

from fakescope.evidence import Evidence
from fakescope.provenance import read_provenance


def kinds(findings: list[Evidence]) -> list[str]:
    return [f.kind for f in findings]


def only(findings: list[Evidence], kind: str) -> Evidence:
    matching = [f for f in findings if f.kind == kind]
    assert len(matching) == 1, f"expected one {kind}, got {kinds(findings)}"
    return matching[0]


def rows_where(rows: list[dict[str, str]], **conditions: str) -> list[dict[str, str]]:
    """Manifest rows whose columns contain each given text."""
    selected = [r for r in rows if all(text in r[col] for col, text in conditions.items())]
    assert selected, f"no manifest rows match {conditions}"
    return selected


def read_row(shared_data: Path, row: dict[str, str]) -> list[Evidence]:
    return read_provenance((shared_data / row["relative_path"]).read_bytes(), row["format"])

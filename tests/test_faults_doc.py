"""docs/faults.md stays true to the suite: every test it names exists, under that name, in that file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "docs" / "faults.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+(?:::\w+)?)")
PLACEHOLDER = "tests/path.py"  # the catalogue's own example of the notation


def defined_tests(path: Path) -> set[str]:
    """``test_x`` for each test function, ``TestX`` and ``TestX::test_y`` for test classes and their methods,
    ``TestX`` for a test case bound by assignment (a hypothesis state machine's ``TestCase``)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.add(node.name)
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test")
            )
    return names


def test_every_test_the_catalogue_names_exists() -> None:
    references = REFERENCE.findall(CATALOGUE.read_text())
    assert len(references) > 50  # the catalogue cites the suite throughout
    missing = [
        f"{file}::{name}"
        for file, name in references
        if file != PLACEHOLDER and (not (ROOT / file).is_file() or name not in defined_tests(ROOT / file))
    ]
    assert missing == []


def test_each_entry_has_a_fault_a_behaviour_and_tests() -> None:
    entries = re.split(r"^### ", CATALOGUE.read_text(), flags=re.MULTILINE)[1:]
    numbered = [entry for entry in entries if re.match(r"\d+\. ", entry)]
    assert len(numbered) >= 30
    for entry in numbered:
        title = entry.splitlines()[0]
        assert "**Fault:**" in entry, title
        assert "**Right behaviour:**" in entry, title
        assert "**Tests:**" in entry or "**Not tested:**" in entry, title

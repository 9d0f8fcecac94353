"""One definition per step (issue 13): a step kind's name is written once, in its catalogue (domain/steps.py
`Kind`, domain/ledger.py `BuddyKind`). Everything else names a kind through the enum member or reads the
catalogue entry, so no other file of the code base (tests aside) carries a kind's name as a string literal.

Python files are read with `ast` (every str constant, the constant parts of f-strings included); templates and
scripts (.html, .js) by a regular expression on quoted strings. A literal offends when it is a kind's name or
starts with one followed by `-` or `.` (a step id such as "monthly_return-2027-01", an audit event such as
"delivery_meeting.record").
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from domain.ledger import BUDDY_STEPS, BuddyKind
from domain.steps import CATALOGUE, Kind

ROOT = Path(__file__).resolve().parent.parent
EXEMPT = {"domain/steps.py", "domain/ledger.py"}
NAMES = sorted({k.value for k in Kind} | {k.value for k in BuddyKind}, key=len, reverse=True)
QUOTED = re.compile(r"""(["'`])((?:\\.|(?!\1).)*)\1""")


def names_a_kind(s: str) -> bool:
    return any(s == n or s.startswith((n + "-", n + ".")) for n in NAMES)


def python_offences(source: str) -> list[tuple[int, str]]:
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and names_a_kind(node.value)]


def text_offences(source: str) -> list[tuple[int, str]]:
    return [(n, m.group(2)) for n, line in enumerate(source.splitlines(), start=1)
            for m in QUOTED.finditer(line) if names_a_kind(m.group(2))]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.py", "*.html", "*.js"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    return [f for f in out if not f.startswith("tests/") and f not in EXEMPT and (ROOT / f).is_file()]


def offences(path: str) -> list[tuple[int, str]]:
    source = (ROOT / path).read_text(encoding="utf-8", errors="replace")
    return python_offences(source) if path.endswith(".py") else text_offences(source)


def test_the_enums_and_the_catalogues_name_the_same_kinds():
    assert set(CATALOGUE) == {k.value for k in Kind}
    assert set(BUDDY_STEPS) == {k.value for k in BuddyKind}
    assert all(k.name == k.value for k in (*Kind, *BuddyKind))


def test_the_scanner_finds_a_planted_literal():
    planted = ('step = "monthly_return-2027-01"\nevent = f"delivery_meeting.record {x}"\nok = Kind.plan_review\n'
               'kinds = ("buddy_forecast",)\nprose = "the monthly_return of May"\n')
    assert python_offences(planted) == [(1, "monthly_return-2027-01"), (2, "delivery_meeting.record "),
                                        (4, "buddy_forecast")]
    assert text_offences('{% if kind == "improvement_plan" %}<a href=\'reinspection-2\'>x</a>{% endif %}\n'
                         '<p>{{ "Improvement plan" }}</p>') == [(1, "improvement_plan"), (1, "reinspection-2")]
    assert not names_a_kind("reinspection_announced") and not names_a_kind("board_to_boards")


def test_no_kind_name_is_written_outside_its_catalogue():
    found = [f"{path}:{line}: {value!r}" for path in tracked_files() for line, value in offences(path)]
    assert not found, ("step kind names written as string literals; use domain.steps.Kind / domain.ledger.BuddyKind "
                       "or the catalogue entry:\n" + "\n".join(found))

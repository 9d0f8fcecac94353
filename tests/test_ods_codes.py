"""Each test file places regimes under ODS codes of its own.

A regime's workflow id is its ODS code and entry date, and the session's dev server is shared by every
test: two files placing the same code on the same day collide (409), which depends on the order the tests
run in. This test finds such a pair before it fails somewhere else.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

PLACED = re.compile(r'(?:place\(\s*stack,\s*|placement\(\s*|World\.place\(\s*stack,\s*|_regime_with_history\('
                    r'\s*stack,\s*)"([A-Z0-9]{3,6})"')


def test_no_two_test_files_place_the_same_ods_code():
    uses: dict[str, set[str]] = defaultdict(set)
    for f in Path(__file__).parent.rglob("*.py"):
        for code in PLACED.findall(f.read_text()):
            uses[code].add(f.name)
    assert len(uses) > 50, "the pattern no longer finds the placements"
    shared = {code: sorted(files) for code, files in uses.items() if len(files) > 1}
    assert not shared, shared

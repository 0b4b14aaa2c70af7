"""Known, open failures of the chaos suite, marked where they show (issue 13 stays open).

Not strict: each shows in some runs only; the mark keeps CI from passing or failing on a
coin toss while the bug is open, and ``-rxX`` lists every run it explained.
"""

from __future__ import annotations

import pytest

MONGODB_RESUMED_EARLY = pytest.mark.xfail(
    strict=False,
    reason=(
        "MongoDB under worker loss: a paused fan-out is sometimes resumed while a call it "
        "waits on is still PENDING, and ends FAILED (seen in some runs under load, never on "
        "SQLite or Redis; cause not found: see the README and issue 13)"
    ),
)

"""Known, open failures of the chaos suite, marked where they show (issue 13 stays open).

Not strict: each shows in some runs only; the mark keeps CI from passing or failing on a
coin toss while the bug is open, and ``-rxX`` lists every run it explained.
"""

from __future__ import annotations

import pytest

MONGODB_RESUMED_EARLY = pytest.mark.xfail(
    strict=False,
    reason=(
        "MongoDB under worker loss: a fan-out rerun after its worker was lost sometimes reads "
        "one of its calls as PENDING after it was resumed, and ends FAILED (3 of about 25 "
        "kill -9 runs after the lock fix; never on SQLite or Redis). In the one run kept, the "
        "call's claim was committed 0.65 s before that read: the task process's replica did "
        "not follow the log past its own registration of the call. Cause not found: see the "
        "README and issue 13"
    ),
)

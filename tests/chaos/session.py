"""The chaos session's seed and figures. A module of its own because pytest imports a conftest under its own
name (``chaos.conftest``) while tests import ``tests.chaos.…``: state kept in the conftest would exist twice, and a
random seed would differ between the line that prints it and the tests that use it."""

from __future__ import annotations

import os
import random
from collections import Counter

SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000))
FIGURES: Counter[str] = Counter()

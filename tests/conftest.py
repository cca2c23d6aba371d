"""Suite-wide pytest set-up.

Test modules are imported with ``--import-mode=importlib`` (see pyproject), so
two folders may each have a ``test_limits.py``. Each folder's support modules
(``core_helpers``, ``mw_support``, …) are imported by plain name, so every test
folder is put on ``sys.path`` here, once, before collection.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _folder in sorted(p for p in _TESTS.rglob("*") if p.is_dir() and p.name != "__pycache__"):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

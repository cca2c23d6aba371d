"""Run the middleware example end to end: start the server, call it, stop it.

    python examples/middleware/run.py

Picks a free port, starts ``server.py --port N`` in a subprocess, waits until
it accepts connections, runs ``client.py --port N``, prints what the client
printed, then terminates the server (SIGTERM: a graceful exit).  Exits 0 on
success.  The steps live in ``examples/_runner.py``, shared by the examples
that have a server and a client; works from a checkout, from any folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # examples/, where _runner.py is

from _runner import run_example  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_example(HERE))

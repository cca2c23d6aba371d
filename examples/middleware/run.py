"""Run the middleware example end to end: ``python examples/middleware/run.py``.

server.py serves the inventory service behind its middleware stack (logging,
deadlines, auth, limits, error mapping, validation) on a free port; client.py
makes the calls that show what each middleware does, printing one line per
call, and exits 1 if a call ends otherwise than promised. The server's JSON
access log goes to stderr. Shares examples/_runner.py with helloworld/run.py.
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # examples/, for _runner
from _runner import run_example  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_example(Path(__file__).resolve().parent))

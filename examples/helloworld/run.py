"""Run the helloworld example end to end: ``python examples/helloworld/run.py``.

The Greeter of server.py serves a free port on 127.0.0.1; client.py says
hello to it once and then asks for a stream of greetings; the server stops
when the client is done. Exits 0 if the client succeeded. (Works from any
folder: examples/_runner.py does the starting and stopping for every example
with a server and a client.)
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # examples/, for _runner
from _runner import run_example  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_example(Path(__file__).resolve().parent))

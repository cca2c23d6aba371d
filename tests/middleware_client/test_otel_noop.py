"""Tracing and metrics middleware without an OpenTelemetry SDK (the API's no-op mode).

They skip their per-call work while nothing can record, but must still
propagate trace context and baggage, and must start recording as soon as an
application sets SDK providers -- even after the middleware were built. Global
providers can be set only once per process, hence the script in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("otel_late_sdk_script.py")
REMOTE_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
REMOTE_SPAN_ID = "b7ad6b7169203331"


def test_noop_mode_propagates_and_a_late_sdk_records() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    remote, plain, baggage_only, recorded = result["seen"]
    # No SDK, a caller's context: the handler runs in it and passes it on.
    assert (remote["trace_id"], remote["span_id"], remote["tenant"]) == (REMOTE_TRACE_ID, REMOTE_SPAN_ID, "acme")
    assert remote["downstream_traceparent"] == f"00-{REMOTE_TRACE_ID}-{REMOTE_SPAN_ID}-01"
    # No SDK, no context: nothing to propagate.
    assert plain == {"trace_id": "0" * 32, "span_id": "0" * 16, "tenant": None, "downstream_traceparent": ""}
    # No SDK, baggage but no trace context: the baggage is still the handler's.
    assert baggage_only == {"trace_id": "0" * 32, "span_id": "0" * 16, "tenant": "initech", "downstream_traceparent": ""}
    # SDK set after the middleware were built: real spans, and the server span is the handler's.
    assert recorded["trace_id"] != "0" * 32 and recorded["tenant"] == "globex"
    assert recorded["downstream_traceparent"].startswith(f"00-{recorded['trace_id']}-")
    assert sorted(result["spans"]) == [["t.Hop/Do", "CLIENT"], ["t.Hop/Do", "SERVER"], ["t.Leaf/Get", "CLIENT"]]
    assert {"rpc.server.duration", "rpc.client.duration", "grpcasgi.server.active_calls"} <= set(result["metrics"])
    assert result["duration_counts"] == [1, 1]  # only the call made once the SDK was there

"""Hypercorn settings for serving gRPC: ``hypercorn --config python:grpcasgi.contrib.hypercorn_config module:app``.

Hypercorn's defaults suit browsers, not gRPC channels, which keep one
connection open for the life of the client and send every call on it:

* ``keep_alive_timeout`` (default 5 s) closes a connection that has had no
  stream for that long, so an idle channel reconnects, and a call sent while
  the server closes fails with UNAVAILABLE. Raised to one hour.
* ``keep_alive_max_requests`` (default 1000) sends GOAWAY after that many
  streams on one connection: a busy channel would reconnect every 1000 calls.
  Raised to effectively unlimited.
* ``h2_max_concurrent_streams`` (default 100) is raised to the bundled
  server's 1000, so both runtimes allow as many concurrent calls.

``graceful_timeout`` (default 3 s) keeps Hypercorn's value: on SIGTERM,
calls in flight get it minus a margin (a quarter, at most 1 s) before
``grpcasgi.asgi.App`` cancels them with UNAVAILABLE (see "Shutdown under
Hypercorn" in ``docs/asgi.md``); raise it with ``--graceful-timeout`` for
long calls that should survive a deploy.

Everything else keeps Hypercorn's defaults: h2c with prior knowledge on a
plain ``--bind`` and ALPN ``h2`` under TLS (``--certfile/--keyfile``) are both
on by default. Options given on the command line override these values.
Hypercorn loads every public name of this module as a setting, so it holds
nothing but settings.
"""

keep_alive_timeout = 3600.0
keep_alive_max_requests = 2**62
h2_max_concurrent_streams = 1000

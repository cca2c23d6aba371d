"""Testing helpers for applications built on grpcasgi."""

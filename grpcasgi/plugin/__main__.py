"""``python -m grpcasgi.plugin``: the protoc plugin (reads a request on stdin)."""

from .main import main

main()

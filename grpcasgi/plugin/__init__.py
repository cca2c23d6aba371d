"""protoc plugin generating grpcasgi service bases and client stubs (``*_grpc.py``).

Run by protoc as ``protoc-gen-grpcasgi_python`` (a console script), or as
``python -m grpcasgi.plugin``; see :mod:`grpcasgi.plugin.main`.
"""

"""Transports: the bundled HTTP/2 server and client connections over ``h2``.

They are thin: framing, headers and status rules come from
:mod:`grpcasgi.protocol`, the call lifecycle from :mod:`grpcasgi.call`.
"""

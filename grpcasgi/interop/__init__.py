"""Interoperability test support (the grpc.testing protos and services)."""

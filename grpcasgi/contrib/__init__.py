"""Optional services built on grpcasgi (health, reflection, ...)."""

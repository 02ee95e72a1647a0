"""choo: a single-host container job runner on rootless Podman."""

__version__ = "0.1.0"

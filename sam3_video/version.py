"""The package's version, written once: `pyproject.toml` reads it from here, the package imports it."""

__version__ = "0.1.0"

"""Packrat, Python edition: a drop-in replacement for the Bash backup tool."""

__version__ = "1.0.0.dev0"

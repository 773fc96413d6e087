"""Command-line entry points: ``fastpgan`` (subcommands) and, later, ``fastpgan-train``."""

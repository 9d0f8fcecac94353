"""Subcommands of the `regime` command-line tool, one module each (each exposes `register(app)`)."""

"""Subcommands of the `regime` command-line tool, one module each (each exposes `register(app)`), and what they
share with the tests and benchmarks: the dev server (devserver), a whole running stack (stack), scenario files
(scenario), waiting for a condition (polling)."""

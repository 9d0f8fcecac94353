"""`python -m tools.simulate` runs nothing, as when this package was one module: the command is `regime simulate`
(regime_cli.py). Without this file it would fail with "cannot be directly executed"."""

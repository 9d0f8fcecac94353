"""The HTTP API (FastAPI): the only door people use. Thin: the workflows hold the rules."""

"""Activities: all I/O of the workflows (PostgreSQL writes, notifications)."""

"""Fault tests: real processes killed by PID, real servers restarted; nothing lost, nothing doubled."""

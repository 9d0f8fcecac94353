"""What the activities, the API and the tools run on: PostgreSQL, Temporal, tracing, mail, the audit chain."""

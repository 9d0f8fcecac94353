-- An idempotency claim whose request died before its response was stored (the API process killed, or
-- PostgreSQL lost between the workflow update and the store) must not hold its key forever: a retry may
-- take the claim over once it is older than the lease, and runs the request again. Re-running is safe:
-- workflow updates carry an id derived from the key, so Temporal answers a repeat with the first outcome.
ALTER TABLE idempotency_keys ADD COLUMN claimed_at timestamptz NOT NULL DEFAULT now();

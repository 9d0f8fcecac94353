-- Indexes for the reads people make all day (bench/reads.py, docs/performance.md): with 10,000 regimes the
-- task inbox seq-scanned every task ever written (350,000 rows) because its "assigned to me OR my role"
-- condition could not use tasks_open_by_role alone: 40-76 ms a page. With these, 0.3-1 ms.
--
-- Plain CREATE INDEX: the runner applies each file in a transaction. On a large live database build them
-- by hand first with CREATE INDEX CONCURRENTLY (same names), and this file then finds them (IF NOT EXISTS).

-- "assigned to me": one half of the inbox's OR (a BitmapOr with the role indexes below).
CREATE INDEX IF NOT EXISTS tasks_open_by_assignee ON tasks (assignee, due, workflow_id, step_id)
    WHERE state = 'open' AND assignee IS NOT NULL;

-- An improvement director, trust or commissioner: their role on the trusts they are assigned to.
CREATE INDEX IF NOT EXISTS tasks_open_by_trust_role ON tasks (ods_code, role, due) WHERE state = 'open';

-- Operations and admin (every open task) and national roles: open tasks in the inbox's order, read until the
-- page is full.
CREATE INDEX IF NOT EXISTS tasks_open_by_due ON tasks (due, workflow_id, step_id) WHERE state = 'open';

-- The regimes list's order (GET /regimes): the first page without sorting every regime.
CREATE INDEX IF NOT EXISTS regimes_by_next_due ON regimes (next_due NULLS LAST, regime_id);

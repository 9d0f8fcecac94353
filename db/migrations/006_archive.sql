-- What a running workflow's rules no longer need leaves its state at continue-as-new and lives here, so a
-- regime's state stays within a bound however long it runs (docs/limits.md): closed steps with their
-- escalations, and older inspections, enforcement actions, decisions and ended partnerships. Reads of a
-- regime merge these rows back in (api/archive.py), so people see the whole history.
CREATE TABLE archived_steps (
    workflow_id text NOT NULL,
    step_id     text NOT NULL,
    regime_id   text NOT NULL,
    kind        text NOT NULL,
    opened_at   timestamptz NOT NULL,
    step        jsonb NOT NULL,
    escalations jsonb NOT NULL DEFAULT '[]',
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, step_id)
);
CREATE INDEX archived_steps_regime ON archived_steps (regime_id, opened_at);

CREATE TABLE archived_records (
    workflow_id text NOT NULL,
    regime_id   text NOT NULL,
    kind        text NOT NULL,     -- inspection, enforcement, decision, buddy
    position    bigint NOT NULL,   -- order within its kind, as it was in the state
    record      jsonb NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, kind, position)
);

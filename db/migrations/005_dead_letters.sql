-- Effects the worker can never write (data PostgreSQL refuses, a trigger that raises, a bug in an effect)
-- are parked here instead of being retried for ever: the regime's clocks and decisions carry on. Once one
-- batch of a workflow is parked, its later batches are parked behind it, so that `regime dead-letters
-- replay` writes them in their original order (the audit chain is a chain) once the cause is fixed.
-- The batch is kept as JSON bytes, not jsonb: what PostgreSQL refused (a NUL character) must still fit.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    workflow_id  text NOT NULL,
    regime_id    text NOT NULL,
    ods_code     text NOT NULL,
    first_seq    bigint NOT NULL,
    last_seq     bigint NOT NULL,
    batch        bytea NOT NULL,
    error        text NOT NULL,
    parked_behind bigint REFERENCES dead_letters (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz,
    replayed_by  text,
    replay_error text,
    UNIQUE (workflow_id, first_seq)
);
CREATE INDEX dead_letters_pending ON dead_letters (workflow_id, id) WHERE replayed_at IS NULL;

-- Regimes (operational projection written by the workflows' effects activity), tasks (the inbox),
-- the append-only audit log, the notification outbox and API idempotency keys.

CREATE TABLE regimes (
    regime_id          text PRIMARY KEY,
    workflow_id        text NOT NULL,
    ods_code           text NOT NULL,
    trust_name         text NOT NULL,
    multi_site         boolean NOT NULL DEFAULT false,
    entry_date         date NOT NULL,
    phase              text NOT NULL,
    segment            integer NOT NULL DEFAULT 4,
    next_due           date,
    overdue            integer NOT NULL DEFAULT 0,
    escalation_level   integer NOT NULL DEFAULT 0,
    buddy_count        integer NOT NULL DEFAULT 0,
    extensions         integer NOT NULL DEFAULT 0,
    exit_date          date,
    sos_letter         boolean NOT NULL DEFAULT false,
    closed             boolean NOT NULL DEFAULT false,
    previous_regime_id text REFERENCES regimes (regime_id),
    last_seq           bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- A trust is in at most one live regime at a time; exit or closure frees it for re-entry.
CREATE UNIQUE INDEX regimes_one_live_per_trust ON regimes (ods_code)
    WHERE phase IN ('in_special_measures', 'extended', 'long_term_solution');
CREATE INDEX regimes_by_phase_due ON regimes (phase, next_due);
CREATE INDEX regimes_by_ods ON regimes (ods_code, entry_date);

CREATE TABLE tasks (
    workflow_id  text NOT NULL,
    step_id      text NOT NULL,
    regime_id    text NOT NULL REFERENCES regimes (regime_id),
    ods_code     text NOT NULL,
    kind         text NOT NULL,
    title        text NOT NULL,
    role         text NOT NULL,
    assignee     text,
    subject      jsonb NOT NULL DEFAULT '{}',
    due          date NOT NULL,
    paused       boolean NOT NULL DEFAULT false,
    state        text NOT NULL CHECK (state IN ('open', 'done', 'cancelled')),
    outcome      text,
    closed_by    text,
    opened_at    timestamptz NOT NULL DEFAULT now(),
    closed_at    timestamptz,
    last_seq     bigint NOT NULL,
    PRIMARY KEY (workflow_id, step_id)
);
CREATE INDEX tasks_open_by_role ON tasks (role, due, workflow_id, step_id) WHERE state = 'open';
CREATE INDEX tasks_by_regime ON tasks (regime_id);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    regime_id   text NOT NULL,
    workflow_id text NOT NULL,
    seq         bigint NOT NULL,
    event       text NOT NULL,
    actor       text NOT NULL,
    role        text NOT NULL,
    step_id     text,
    step_kind   text,
    reason      text,
    detail      jsonb NOT NULL DEFAULT '{}',
    request_id  text,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    prev_hash   text NOT NULL,
    hash        text NOT NULL,
    UNIQUE (workflow_id, seq)
);
CREATE INDEX audit_by_regime ON audit_log (regime_id, id);
CREATE INDEX audit_by_actor ON audit_log (actor, at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    workflow_id text NOT NULL,
    seq         bigint NOT NULL,
    regime_id   text NOT NULL,
    step_id     text,
    rung        text,
    recipients  text[] NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    UNIQUE (workflow_id, seq)
);
CREATE INDEX notifications_unsent ON notifications (id) WHERE sent_at IS NULL;

CREATE TABLE idempotency_keys (
    user_id      text NOT NULL,
    key          text NOT NULL,
    method       text NOT NULL,
    path         text NOT NULL,
    body_hash    text NOT NULL,
    status_code  integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

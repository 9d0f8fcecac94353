-- The challenged-providers watch list (issue 16 item 4, seed 004): not in the public domain. Its own tables, never
-- joined into the regimes views; the API keeps them (the entry's workflow sets no search attribute and writes no
-- task). Every read of an entry is recorded in watch_list_access: who looked, when, at what.

CREATE TABLE watch_list (
    entry_id      text PRIMARY KEY,
    ods_code      text NOT NULL,
    trust_name    text NOT NULL,
    added_on      date NOT NULL,
    added_by      text NOT NULL,
    status        text NOT NULL DEFAULT 'on_list' CHECK (status IN ('on_list', 'removed', 'placed')),
    ended_on      date,
    end_reason    text,
    regime_id     text REFERENCES regimes (regime_id),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX watch_list_one_live_per_trust ON watch_list (ods_code) WHERE status = 'on_list';

CREATE TABLE watch_list_access (
    id         bigserial PRIMARY KEY,
    entry_id   text NOT NULL REFERENCES watch_list (entry_id),
    user_id    text NOT NULL,
    roles      text[] NOT NULL,
    what       text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX watch_list_access_by_entry ON watch_list_access (entry_id, at);

DO $$
DECLARE
    svc text := current_setting('special_measures.service_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON watch_list TO %I', svc);
    EXECUTE format('GRANT SELECT, INSERT ON watch_list_access TO %I', svc);
    EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE watch_list_access_id_seq TO %I', svc);
END $$;

-- Central funding drawn down by a trust (issue 16 item 1): one row per regime and drawdown, written by the
-- regime workflow's funding activity after the regulator authorises it. The UNIQUE key makes a retried
-- authorisation or activity, or a worker that died after the insert, record the payment once. Integer pence.

CREATE TABLE funding_payments (
    id              bigserial PRIMARY KEY,
    -- a regime's id, or a watch-list entry's (issue 16 item 4: a trust on the list can receive central funding;
    -- the entry is not in `regimes`, which every public view reads)
    regime_id       text NOT NULL,
    drawdown        integer NOT NULL CHECK (drawdown >= 1),
    amount_pence    bigint NOT NULL CHECK (amount_pence > 0),
    against         text[] NOT NULL,
    authorised_by   text NOT NULL,
    authorised_at   timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT funding_payments_once_per_drawdown UNIQUE (regime_id, drawdown)
);

-- Money out of the door: never edited or removed once recorded (the function of migration 002).
CREATE TRIGGER funding_payments_final BEFORE UPDATE OR DELETE ON funding_payments
    FOR EACH ROW EXECUTE FUNCTION buddy_payments_are_final();

-- The service role reads and appends, as for buddy payments (008).
DO $$
DECLARE
    svc text := current_setting('special_measures.service_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON funding_payments TO %I', svc);
    EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE funding_payments_id_seq TO %I', svc);
END $$;

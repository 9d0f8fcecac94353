-- Buddy payments: one row per partnership and quarter, written by the partnership workflow's payment
-- activity after the improvement director authorises it. The UNIQUE key (not the run id, which changes on
-- continue-as-new) is what makes a retried authorisation or activity, or a worker that died after the
-- insert, record the payment once. Amounts are integer pence.

CREATE TABLE buddy_payments (
    id              bigserial PRIMARY KEY,
    partnership_id  text NOT NULL,
    quarter         integer NOT NULL CHECK (quarter >= 1),
    regime_id       text NOT NULL REFERENCES regimes (regime_id),
    buddy_ods       text NOT NULL,
    amount_pence    bigint NOT NULL CHECK (amount_pence > 0),
    authorised_by   text NOT NULL,
    authorised_at   timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT buddy_payments_once_per_quarter UNIQUE (partnership_id, quarter)
);
CREATE INDEX buddy_payments_by_regime ON buddy_payments (regime_id, partnership_id, quarter);

-- Invoice lines: each names the support plan workstream it is charged to.
CREATE TABLE buddy_payment_lines (
    payment_id    bigint NOT NULL REFERENCES buddy_payments (id),
    line_no       integer NOT NULL CHECK (line_no >= 1),
    workstream    text NOT NULL CHECK (workstream <> ''),
    description   text NOT NULL,
    amount_pence  bigint NOT NULL CHECK (amount_pence > 0),
    PRIMARY KEY (payment_id, line_no)
);

-- A payment is money out of the door: never edited or removed once recorded.
CREATE FUNCTION buddy_payments_are_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is final: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER buddy_payments_final BEFORE UPDATE OR DELETE ON buddy_payments
    FOR EACH ROW EXECUTE FUNCTION buddy_payments_are_final();
CREATE TRIGGER buddy_payment_lines_final BEFORE UPDATE OR DELETE ON buddy_payment_lines
    FOR EACH ROW EXECUTE FUNCTION buddy_payments_are_final();

-- At commit, a payment's lines add up to its amount (checked once the lines are in).
CREATE FUNCTION buddy_payment_lines_add_up() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lines_total bigint;
BEGIN
    SELECT coalesce(sum(amount_pence), 0) INTO lines_total FROM buddy_payment_lines WHERE payment_id = NEW.id;
    IF lines_total <> NEW.amount_pence THEN
        RAISE EXCEPTION 'buddy payment %: lines total % pence, payment % pence', NEW.id, lines_total,
            NEW.amount_pence USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER buddy_payment_lines_total AFTER INSERT ON buddy_payments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION buddy_payment_lines_add_up();

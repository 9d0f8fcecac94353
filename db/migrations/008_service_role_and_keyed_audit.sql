-- Issue 17, finding 2: the service no longer acts as the owner of its tables, and the audit chain is keyed.
--
-- The service role (DATABASE_SERVICE_ROLE, passed by the migration runner as special_measures.service_role)
-- may read and append the audit log but not change, delete or truncate it, and, not being the owner, cannot
-- disable its triggers. The owner (the login that runs these migrations) keeps every right. Roles belong to
-- the whole cluster: the role is created once (NOLOGIN; a deployment gives it a login of its own, see
-- docs/operations.md) and granted its rights in each schema.

DO $$
DECLARE
    svc text := current_setting('special_measures.service_role');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = svc) THEN
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', svc);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another schema's migration created it a moment ago
        END;
    END IF;
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = svc) THEN
        RAISE EXCEPTION 'DATABASE_SERVICE_ROLE % is a superuser or bypasses row security: give the service a '
                        'role of its own', svc;
    END IF;
    IF svc = current_user THEN
        RAISE EXCEPTION 'DATABASE_SERVICE_ROLE % is the login running the migrations: migrations must run as '
                        'the owner (DATABASE_MIGRATION_URL)', svc;
    END IF;
    -- The runner's login must be able to SET ROLE to the service role (it is a member), so that a single
    -- login (the embedded set-up) can still run the service as the service role.
    IF NOT pg_has_role(current_user, svc, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', svc, current_user);
    END IF;

    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), svc);
    -- Append-only or final tables: read and insert.
    EXECUTE format('GRANT SELECT, INSERT ON audit_log, buddy_payments, buddy_payment_lines, documents, '
                   'document_uses, archived_steps, archived_records TO %I', svc);
    -- Projections, the inbox, the outbox, dead letters and idempotency keys change as the regime moves on.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON regimes, tasks, notifications, dead_letters TO %I', svc);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO %I', svc);
    -- A placement Temporal refused is rolled back by deleting its row (api/routes/regimes.py).
    EXECUTE format('GRANT DELETE ON regimes TO %I', svc);
    EXECUTE format('GRANT SELECT ON schema_migrations TO %I', svc);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', current_schema(), svc);
END $$;

-- Keyed chain: rows written from now on are HMAC-SHA256 with a key the database never holds. Rows written
-- before keep their plain SHA-256 and stay verifiable; hash_alg says which, per row.
ALTER TABLE audit_log ADD COLUMN hash_alg text NOT NULL DEFAULT 'sha256'
    CHECK (hash_alg IN ('sha256', 'hmac-sha256'));
ALTER TABLE audit_log ALTER COLUMN hash_alg DROP DEFAULT;

-- The last row that may be plain SHA-256: anything after it must be keyed, so an INSERT that claims the old
-- algorithm (it needs no key) is not accepted as part of a chain.
CREATE TABLE audit_legacy (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_sha256_id  bigint NOT NULL
);
INSERT INTO audit_legacy (last_sha256_id) SELECT coalesce(max(id), 0) FROM audit_log;
DO $$
BEGIN
    EXECUTE format('GRANT SELECT ON audit_legacy TO %I', current_setting('special_measures.service_role'));
END $$;

-- Documents (improvement plans, monthly returns) live here once, addressed by the SHA-256 of their
-- canonical JSON; the workflow and its history carry only the reference and the hash, which the audit
-- chain records (docs/limits.md). Immutable: the same content is the same row, and a row never changes.
CREATE TABLE documents (
    sha256     text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    kind       text NOT NULL,
    body       bytea NOT NULL,
    bytes      integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL
);
-- Which regime's step a document was submitted to (one document may serve several: the same plan resent).
CREATE TABLE document_uses (
    regime_id  text NOT NULL,
    step_id    text NOT NULL,
    sha256     text NOT NULL REFERENCES documents (sha256),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (regime_id, step_id, sha256)
);
CREATE FUNCTION documents_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'documents are immutable';
END $$;
CREATE TRIGGER documents_immutable BEFORE UPDATE OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_immutable();

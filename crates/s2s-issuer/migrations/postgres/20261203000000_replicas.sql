-- Publish-then-sign: a rotated key is stored with activate_at (when it starts signing); the key
-- it replaces gets retired_at = that moment and keeps its private half until then. NULL: signing
-- since created_at (keys made before this migration, first keys).
ALTER TABLE signing_keys ADD COLUMN activate_at BIGINT;

-- One counter bumped by every change to accounts or keys, in the writing transaction (the
-- triggers below): replicas poll it to know when to reload their in-memory copies.
CREATE TABLE state_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO state_version (id, version) VALUES (1, 0);

CREATE FUNCTION s2s_bump_state_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER accounts_bump_state_version AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION s2s_bump_state_version();
CREATE TRIGGER signing_keys_bump_state_version AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION s2s_bump_state_version();

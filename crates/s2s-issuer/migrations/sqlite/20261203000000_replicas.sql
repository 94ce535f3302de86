-- The same as PostgreSQL's migration of this name: activate_at, and the state version that
-- every change to accounts or keys bumps in its own transaction.
ALTER TABLE signing_keys ADD COLUMN activate_at INTEGER;

CREATE TABLE state_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO state_version (id, version) VALUES (1, 0);

CREATE TRIGGER accounts_insert_bump AFTER INSERT ON accounts
BEGIN UPDATE state_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_update_bump AFTER UPDATE ON accounts
BEGIN UPDATE state_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_delete_bump AFTER DELETE ON accounts
BEGIN UPDATE state_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER signing_keys_insert_bump AFTER INSERT ON signing_keys
BEGIN UPDATE state_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER signing_keys_update_bump AFTER UPDATE ON signing_keys
BEGIN UPDATE state_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER signing_keys_delete_bump AFTER DELETE ON signing_keys
BEGIN UPDATE state_version SET version = version + 1 WHERE id = 1; END;

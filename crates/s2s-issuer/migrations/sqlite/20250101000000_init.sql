-- Service accounts. Lists are JSON arrays of strings; times are Unix seconds.
CREATE TABLE accounts (
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id                  TEXT    NOT NULL UNIQUE,
    name                       TEXT    NOT NULL UNIQUE,
    description                TEXT    NOT NULL DEFAULT '',
    scopes                     TEXT    NOT NULL DEFAULT '[]',
    allowed_ips                TEXT    NOT NULL DEFAULT '[]',
    audiences                  TEXT    NOT NULL DEFAULT '[]',
    status                     TEXT    NOT NULL CHECK (status IN ('ACTIVE', 'DISABLED')),
    -- argon2id PHC strings; the previous one verifies until previous_secret_expires_at.
    secret_hash                TEXT    NOT NULL,
    previous_secret_hash       TEXT,
    previous_secret_expires_at INTEGER,
    secret_rotated_at          INTEGER,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
);

-- Signing keys. The active key has retired_at NULL and its PKCS#8 private key; a rotated-out key
-- keeps only its public JWK, published until retire_at.
CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    alg         TEXT    NOT NULL,
    private_key BLOB,
    public_jwk  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER,
    retire_at   INTEGER
);

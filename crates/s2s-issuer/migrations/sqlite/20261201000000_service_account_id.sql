-- The seed's Auth Service API: a service account has an id of its own (`svc_` + 16 hex digits,
-- the admin API's path parameter) besides its client id, and an optional expiry (Unix seconds;
-- past it the account gets no tokens).
ALTER TABLE accounts ADD COLUMN service_account_id TEXT;
ALTER TABLE accounts ADD COLUMN expires_at INTEGER;
UPDATE accounts SET service_account_id = 'svc_' || lower(hex(randomblob(8)))
    WHERE service_account_id IS NULL;
CREATE UNIQUE INDEX accounts_service_account_id ON accounts (service_account_id);

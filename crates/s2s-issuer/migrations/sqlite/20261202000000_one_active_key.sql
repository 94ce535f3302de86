-- At most one active signing key (as on PostgreSQL): a first key generated while another is
-- active is refused, and the issuer loads the active one.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;

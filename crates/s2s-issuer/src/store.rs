//! Storage: SQLite or PostgreSQL through sqlx, with embedded migrations (one set per backend,
//! the same tables and columns). Every query is written once, with `$1`-style parameters that
//! both drivers read, and runs on whichever pool `db` chose.
//!
//! `postgres://…` (or `postgresql://…`) selects PostgreSQL: several replicas may share one
//! database; the migrations run at start under sqlx's advisory lock, so replicas that start at
//! the same moment apply them once. Anything else is SQLite. A SQLite file is opened in WAL mode with `synchronous=FULL`: a write is on disk before the call that
//! made it returns, so an acknowledged change survives `kill -9` or a power cut. `:memory:` keeps
//! everything in one connection that lives as long as the issuer (for tests and demos).

use std::{str::FromStr as _, time::Duration};

use sqlx::{
    FromRow, PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use std::sync::Arc;

use crate::{Error, keys::Kek};

/// The settings that name a key-encryption key, for errors.
const KEK_SETTINGS: &str =
    "key_encryption_key, key_encryption_key_file or S2S_ISSUER_KEY_ENCRYPTION_KEY";

/// The database handle.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pool: Pool,
    /// PostgreSQL: one connection of its own for the health poll ([`Store::version`]), so a
    /// saturated `pool` cannot make a replica look down.
    poll: Option<PgPool>,
    /// Encrypts private signing keys on their way in, decrypts them on their way out.
    kek: Option<Arc<Kek>>,
}

/// The pool of the backend `db` chose.
#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the pool of whichever backend is in use (the body is
/// compiled once per backend; the SQL must be portable).
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Inserts a new active signing key: kid, alg, private key (as stored), public JWK, creation.
const INSERT_KEY: &str = "INSERT INTO signing_keys \
                          (kid, alg, private_key, public_jwk, created_at, activate_at) \
                          VALUES ($1, $2, $3, $4, $5, $6)";

/// The PostgreSQL advisory lock key of key rotations ("s2s-keys" in ASCII): one replica
/// rotates at a time, the others wait and see its result.
const ROTATION_LOCK: i64 = 0x7332_732d_6b65_7973;

/// Whether `db` names a PostgreSQL database.
/// A PostgreSQL server other than this host (loopback or a Unix socket) must be reached over
/// TLS: sqlx's default `sslmode=prefer` falls back to plain TCP, which anyone on the path can
/// force. The URL (or `PGSSLMODE`) must say `require`, `verify-ca` or `verify-full`, or opt out
/// in so many words with `disable`.
fn check_postgres_tls(db: &str, host: &str, env_mode: Option<&str>) -> Result<(), Error> {
    let local = host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local {
        return Ok(());
    }
    let url_mode = url::Url::parse(db).ok().and_then(|url| {
        url.query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned())
    });
    match url_mode.as_deref().or(env_mode) {
        Some("require" | "verify-ca" | "verify-full" | "disable") => Ok(()),
        other => Err(Error::Config {
            field: "db".into(),
            message: format!(
                "the PostgreSQL server `{host}` is not on this host and `sslmode` is {}: \
                 add `?sslmode=verify-full` (or `require`) to the URL so the connection cannot \
                 fall back to plain TCP, or `?sslmode=disable` to allow plain TCP explicitly",
                other.map_or("not set".to_owned(), |m| format!("`{m}`"))
            ),
        }),
    }
}

pub(crate) fn is_postgres(db: &str) -> bool {
    let db = db.trim();
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// One row of `accounts`.
#[derive(Clone, FromRow)]
pub(crate) struct AccountRow {
    pub(crate) id: i64,
    pub(crate) client_id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) scopes: String,
    pub(crate) allowed_ips: String,
    pub(crate) audiences: String,
    pub(crate) status: String,
    pub(crate) secret_hash: String,
    pub(crate) previous_secret_hash: Option<String>,
    pub(crate) previous_secret_expires_at: Option<i64>,
    pub(crate) secret_rotated_at: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) service_account_id: String,
    pub(crate) expires_at: Option<i64>,
}

/// One row of `signing_keys`.
#[derive(Clone, FromRow)]
pub(crate) struct KeyRow {
    pub(crate) kid: String,
    pub(crate) alg: String,
    pub(crate) private_key: Option<Vec<u8>>,
    pub(crate) public_jwk: String,
    pub(crate) created_at: i64,
    /// When it stops signing (the next key's `activate_at`).
    pub(crate) retired_at: Option<i64>,
    pub(crate) retire_at: Option<i64>,
    /// When it starts signing; `None`: since `created_at`.
    pub(crate) activate_at: Option<i64>,
}

/// The values of a new account row.
pub(crate) struct NewAccountRow<'a> {
    pub(crate) service_account_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) description: &'a str,
    pub(crate) scopes: String,
    pub(crate) allowed_ips: String,
    pub(crate) audiences: String,
    pub(crate) secret_hash: &'a str,
    pub(crate) expires_at: Option<i64>,
    pub(crate) now: i64,
}

/// Changed columns of an account; `None` leaves a column as it is.
#[derive(Default)]
pub(crate) struct AccountChanges {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) scopes: Option<String>,
    pub(crate) allowed_ips: Option<String>,
    pub(crate) audiences: Option<String>,
    pub(crate) status: Option<&'static str>,
    /// `Some(None)` clears the expiry.
    pub(crate) expires_at: Option<Option<i64>>,
}

/// How the admin API names an account: by its service account id (`svc_…`) or its client id.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AccountRef<'a> {
    ServiceAccountId(&'a str),
    ClientId(&'a str),
}

impl<'a> AccountRef<'a> {
    /// `svc_…` is a service account id, anything else a client id (client ids are hex).
    pub(crate) fn parse(id: &'a str) -> Self {
        if id.starts_with(SERVICE_ACCOUNT_ID_PREFIX) {
            AccountRef::ServiceAccountId(id)
        } else {
            AccountRef::ClientId(id)
        }
    }

    fn column(self) -> &'static str {
        match self {
            AccountRef::ServiceAccountId(_) => "service_account_id",
            AccountRef::ClientId(_) => "client_id",
        }
    }

    fn value(self) -> &'a str {
        match self {
            AccountRef::ServiceAccountId(v) | AccountRef::ClientId(v) => v,
        }
    }
}

/// The prefix of service account ids.
pub(crate) const SERVICE_ACCOUNT_ID_PREFIX: &str = "svc_";

/// The value of `db` that means "in memory".
pub(crate) fn is_memory(db: &str) -> bool {
    matches!(db, ":memory:" | "sqlite::memory:" | "sqlite://:memory:")
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Opens (creating if needed) the database and runs the migrations.
    /// With `kek`, private signing keys are stored encrypted; PostgreSQL requires one.
    pub(crate) async fn open(db: &str, kek: Option<Kek>) -> Result<Store, Error> {
        let db = db.trim();
        let kek = kek.map(Arc::new);
        if is_postgres(db) {
            if kek.is_none() {
                return Err(Error::Config {
                    field: "key_encryption_key".into(),
                    message: format!(
                        "PostgreSQL stores the private signing keys encrypted: set {KEK_SETTINGS} \
                         (base64 of 32 random bytes, the same on every replica)"
                    ),
                });
            }
            return Self::open_postgres(db, kek).await;
        }
        let memory = is_memory(db);
        let (options, pool) = if memory {
            let options = SqliteConnectOptions::from_str("sqlite::memory:")?
                .journal_mode(SqliteJournalMode::Memory);
            // One connection that never closes: the database lives exactly as long as it.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            (options, pool)
        } else {
            let options = if db.starts_with("sqlite:") {
                SqliteConnectOptions::from_str(db).map_err(|e| Error::Config {
                    field: "db".into(),
                    message: format!("`{db}` is not a SQLite URL: {e}"),
                })?
            } else {
                SqliteConnectOptions::new().filename(db)
            };
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            (options, SqlitePoolOptions::new().max_connections(4))
        };
        let options = options
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let created = !memory && !options.get_filename().exists();
        let filename = options.get_filename().to_owned();
        let pool = pool
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| Error::Config {
                field: "db".into(),
                message: format!("cannot open `{db}`: {e}"),
            })?;
        if created {
            restrict_permissions(&filename);
        }
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            poll: None,
            kek,
        })
    }

    /// Connects to PostgreSQL and runs its migrations (under sqlx's advisory lock: replicas
    /// starting at once apply them once, the others wait and find them applied).
    async fn open_postgres(db: &str, kek: Option<Arc<Kek>>) -> Result<Store, Error> {
        // The URL may hold a password: errors name the host and database only.
        let options = PgConnectOptions::from_str(db).map_err(|e| Error::Config {
            field: "db".into(),
            message: format!("not a PostgreSQL URL: {e}"),
        })?;
        let shown = format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        check_postgres_tls(
            db,
            options.get_host(),
            std::env::var("PGSSLMODE").ok().as_deref(),
        )?;
        // A short acquire wait: during an outage an admin write answers 503 within about 1 s
        // (before the poll notices), a token read falls back to memory.
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(1))
            .connect_with(options.clone())
            .await
            .map_err(|e| Error::Config {
                field: "db".into(),
                message: format!("cannot connect to `{shown}`: {e}"),
            })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        // Connects lazily: the poll's timeout bounds each attempt.
        let poll = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(crate::sync::POLL_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Store {
            pool: Pool::Postgres(pool),
            poll: Some(poll),
            kek,
        })
    }

    /// Whether this store is on PostgreSQL (shared by replicas).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Closes the connections (waits for them to finish).
    pub(crate) async fn close(&self) {
        if let Some(poll) = &self.poll {
            poll.close().await;
        }
        on_pool!(self, |pool| pool.close().await)
    }

    // ---- accounts ----

    pub(crate) async fn insert_account(&self, row: NewAccountRow<'_>) -> Result<AccountRow, Error> {
        on_pool!(self, |pool| sqlx::query_as::<_, AccountRow>(
            "INSERT INTO accounts (service_account_id, client_id, name, description, scopes, \
             allowed_ips, audiences, status, secret_hash, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'ACTIVE', $8, $9, $10, $11) RETURNING *",
        )
        .bind(row.service_account_id)
        .bind(row.client_id)
        .bind(row.name)
        .bind(row.description)
        .bind(row.scopes)
        .bind(row.allowed_ips)
        .bind(row.audiences)
        .bind(row.secret_hash)
        .bind(row.expires_at)
        .bind(row.now)
        .bind(row.now)
        .fetch_one(pool)
        .await)
        .map_err(|e| {
            if unique_violation(&e) {
                Error::Conflict(format!("a service account named `{}` exists", row.name))
            } else {
                e.into()
            }
        })
    }

    pub(crate) async fn account(&self, id: AccountRef<'_>) -> Result<Option<AccountRow>, Error> {
        let query = format!("SELECT * FROM accounts WHERE {} = $1", id.column());
        Ok(on_pool!(self, |pool| sqlx::query_as::<_, AccountRow>(
            &query
        )
        .bind(id.value())
        .fetch_optional(pool)
        .await)?)
    }

    /// Accounts with `id > after`, in creation order.
    pub(crate) async fn accounts_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AccountRow>, Error> {
        Ok(on_pool!(self, |pool| sqlx::query_as::<_, AccountRow>(
            "SELECT * FROM accounts WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?)
    }

    /// The `scopes` column of every active account.
    pub(crate) async fn all_scopes(&self) -> Result<Vec<String>, Error> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar::<_, String>(
            "SELECT scopes FROM accounts WHERE status = 'ACTIVE'"
        )
        .fetch_all(pool)
        .await)?)
    }

    pub(crate) async fn update_account(
        &self,
        id: AccountRef<'_>,
        changes: AccountChanges,
        now: i64,
    ) -> Result<Option<AccountRow>, Error> {
        let name = changes.name.clone();
        let query = format!(
            "UPDATE accounts SET name = COALESCE($1, name), \
             description = COALESCE($2, description), scopes = COALESCE($3, scopes), \
             allowed_ips = COALESCE($4, allowed_ips), audiences = COALESCE($5, audiences), \
             status = COALESCE($6, status), \
             expires_at = CASE WHEN $7 THEN $8 ELSE expires_at END, updated_at = $9 \
             WHERE {} = $10 RETURNING *",
            id.column()
        );
        on_pool!(self, |pool| sqlx::query_as::<_, AccountRow>(&query)
            .bind(changes.name.clone())
            .bind(changes.description.clone())
            .bind(changes.scopes.clone())
            .bind(changes.allowed_ips.clone())
            .bind(changes.audiences.clone())
            .bind(changes.status)
            .bind(changes.expires_at.is_some())
            .bind(changes.expires_at.flatten())
            .bind(now)
            .bind(id.value())
            .fetch_optional(pool)
            .await)
        .map_err(|e| {
            if unique_violation(&e) {
                Error::Conflict(format!(
                    "a service account named `{}` exists",
                    name.unwrap_or_default()
                ))
            } else {
                e.into()
            }
        })
    }

    /// Replaces the secret hash; the old one stays valid until `previous_expires_at` when set.
    pub(crate) async fn rotate_secret(
        &self,
        id: AccountRef<'_>,
        new_hash: &str,
        previous_expires_at: Option<i64>,
        now: i64,
    ) -> Result<Option<AccountRow>, Error> {
        let query = format!(
            "UPDATE accounts SET \
             previous_secret_hash = CASE WHEN $1 IS NULL THEN NULL ELSE secret_hash END, \
             previous_secret_expires_at = $1, secret_hash = $2, secret_rotated_at = $3, \
             updated_at = $3 WHERE {} = $4 RETURNING *",
            id.column()
        );
        Ok(on_pool!(self, |pool| sqlx::query_as::<_, AccountRow>(
            &query
        )
        .bind(previous_expires_at)
        .bind(new_hash)
        .bind(now)
        .bind(id.value())
        .fetch_optional(pool)
        .await)?)
    }

    /// Deletes an account; its client id when it existed.
    pub(crate) async fn delete_account(&self, id: AccountRef<'_>) -> Result<Option<String>, Error> {
        let query = format!(
            "DELETE FROM accounts WHERE {} = $1 RETURNING client_id",
            id.column()
        );
        Ok(on_pool!(self, |pool| sqlx::query_scalar::<_, String>(
            &query
        )
        .bind(id.value())
        .fetch_optional(pool)
        .await)?)
    }

    // ---- signing keys ----

    /// The signing keys, private halves decrypted. A stored encrypted key without the
    /// key-encryption key, or with another one, is a configuration error naming the setting.
    pub(crate) async fn keys(&self) -> Result<Vec<KeyRow>, Error> {
        let mut rows = on_pool!(self, |pool| sqlx::query_as::<_, KeyRow>(
            "SELECT * FROM signing_keys ORDER BY created_at, kid"
        )
        .fetch_all(pool)
        .await)?;
        for row in &mut rows {
            let Some(stored) = &row.private_key else {
                continue;
            };
            if !Kek::is_sealed(stored) {
                continue; // written before encryption was configured
            }
            let kek = self.kek.as_ref().ok_or_else(|| Error::Config {
                field: "key_encryption_key".into(),
                message: format!(
                    "the stored signing key `{}` is encrypted: set {KEK_SETTINGS}",
                    row.kid
                ),
            })?;
            let plain = kek.open(&row.kid, stored).ok_or_else(|| Error::Config {
                field: "key_encryption_key".into(),
                message: format!(
                    "does not decrypt the stored signing key `{}`: the key-encryption key \
                     ({KEK_SETTINGS}) is not the one it was stored with",
                    row.kid
                ),
            })?;
            row.private_key = Some(plain);
        }
        Ok(rows)
    }

    /// Publishes `new`, which signs from `activate_at` on; the key signing until then stops at
    /// `activate_at` and stays published until `retire_at`. One transaction (a crash leaves
    /// either the old state or the new one); on PostgreSQL under an advisory lock, so that
    /// replicas rotating at once do it one after the other. With `unless_newer_than`, nothing is
    /// done when a key was created at or after that time (a scheduled rotation another replica
    /// already made): whether `new` was stored.
    pub(crate) async fn rotate_keys(
        &self,
        new: &KeyRow,
        activate_at: i64,
        retire_at: i64,
        unless_newer_than: Option<i64>,
    ) -> Result<bool, Error> {
        let private_key = self.sealed_private_key(new)?;
        let shared = self.is_shared();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if shared {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(ROTATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(since) = unless_newer_than {
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(created_at) FROM signing_keys")
                        .fetch_one(&mut *tx)
                        .await?;
                if newest.is_some_and(|t| t >= since) {
                    return Ok(false);
                }
            }
            // A key that stops signing now forgets its private half at once; one that signs
            // until `activate_at` keeps it until then (erased by `delete_retired_keys`).
            sqlx::query(
                "UPDATE signing_keys SET retired_at = $1, retire_at = $2, \
                 private_key = CASE WHEN $1 <= $3 THEN NULL ELSE private_key END \
                 WHERE retired_at IS NULL",
            )
            .bind(activate_at)
            .bind(retire_at)
            .bind(new.created_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(INSERT_KEY)
                .bind(&new.kid)
                .bind(&new.alg)
                .bind(&private_key)
                .bind(&new.public_jwk)
                .bind(new.created_at)
                .bind((activate_at > new.created_at).then_some(activate_at))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The state version: bumped (by triggers, in the writing transaction) by every change to
    /// accounts or keys, whichever process made it.
    pub(crate) async fn version(&self) -> Result<i64, Error> {
        const VERSION: &str = "SELECT version FROM state_version WHERE id = 1";
        if let Some(poll) = &self.poll {
            return Ok(sqlx::query_scalar::<_, i64>(VERSION)
                .fetch_one(poll)
                .await?);
        }
        Ok(on_pool!(self, |pool| sqlx::query_scalar::<_, i64>(
            VERSION
        )
        .fetch_one(pool)
        .await)?)
    }

    /// The private key of `new` as stored: sealed when a key-encryption key is configured.
    fn sealed_private_key(&self, new: &KeyRow) -> Result<Option<Vec<u8>>, Error> {
        match (&self.kek, &new.private_key) {
            (Some(kek), Some(plain)) => Ok(Some(kek.seal(&new.kid, plain)?)),
            (_, plain) => Ok(plain.clone()),
        }
    }

    /// Stores the first key unless another one is active (another replica created it at the
    /// same moment: PostgreSQL's unique index on the active key refuses a second one). Whether
    /// this one was stored.
    pub(crate) async fn insert_first_key(&self, new: &KeyRow) -> Result<bool, Error> {
        let private_key = self.sealed_private_key(new)?;
        let result = on_pool!(self, |pool| sqlx::query(INSERT_KEY,)
            .bind(&new.kid)
            .bind(&new.alg)
            .bind(&private_key)
            .bind(&new.public_jwk)
            .bind(new.created_at)
            .bind(None::<i64>)
            .execute(pool)
            .await
            .map(|_| ()));
        match result {
            Ok(()) => Ok(true),
            Err(e) if unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes rotated-out keys whose publication ended at or before `now`, and erases the
    /// private halves of keys that stopped signing by then: how many keys were deleted.
    pub(crate) async fn delete_retired_keys(&self, now: i64) -> Result<u64, Error> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query(
                "DELETE FROM signing_keys WHERE retire_at IS NOT NULL AND retire_at <= $1",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE signing_keys SET private_key = NULL \
                 WHERE retired_at <= $1 AND private_key IS NOT NULL",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(deleted)
        })
    }
}

/// Owner-only permissions on a database file we created: it holds private signing keys.
fn restrict_permissions(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "could not restrict the database file to its owner");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Test databases (the file the replica suite shares).
#[cfg(test)]
#[path = "../tests/support/pgdb.rs"]
pub(crate) mod testdb;

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::STANDARD};

    use super::{testdb::PgTestDb, *};

    fn new_row<'a>(name: &'a str, client_id: &'a str, svc: &'a str) -> NewAccountRow<'a> {
        NewAccountRow {
            service_account_id: svc,
            client_id,
            name,
            description: "d",
            scopes: r#"["a:read"]"#.into(),
            allowed_ips: "[]".into(),
            audiences: "[]".into(),
            secret_hash: "h1",
            expires_at: Some(100),
            now: 10,
        }
    }

    fn key_row(kid: &str, created_at: i64) -> KeyRow {
        KeyRow {
            kid: kid.into(),
            alg: "ES256".into(),
            private_key: Some(vec![1, 2, 3]),
            public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
            created_at,
            retired_at: None,
            retire_at: None,
            activate_at: None,
        }
    }

    fn test_kek() -> Kek {
        Kek::from_base64(&STANDARD.encode([7u8; 32])).unwrap()
    }

    /// The store's contract, one body for every backend.
    async fn store_suite(store: Store) {
        // accounts: insert, read by either id, names unique
        let one = store
            .insert_account(new_row("one", "c1", "svc_0000000000000001"))
            .await
            .unwrap();
        assert_eq!((one.status.as_str(), one.expires_at), ("ACTIVE", Some(100)));
        let two = store
            .insert_account(new_row("two", "c2", "svc_0000000000000002"))
            .await
            .unwrap();
        assert!(two.id > one.id);
        let dup = store
            .insert_account(new_row("one", "c3", "svc_0000000000000003"))
            .await;
        assert!(matches!(dup, Err(Error::Conflict(_))), "{:?}", dup.err());
        let by_svc = store
            .account(AccountRef::parse("svc_0000000000000002"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_svc.client_id, "c2");
        assert!(
            store
                .account(AccountRef::ClientId("nope"))
                .await
                .unwrap()
                .is_none()
        );

        // paging
        let page = store.accounts_after(0, 1).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].client_id, "c1");
        let rest = store.accounts_after(page[0].id, 10).await.unwrap();
        assert_eq!(
            rest.iter()
                .map(|r| r.client_id.as_str())
                .collect::<Vec<_>>(),
            ["c2"]
        );

        // update: only the given columns; expiry cleared; rename onto a taken name refused
        let changes = AccountChanges {
            scopes: Some(r#"["b:write"]"#.into()),
            status: Some("DISABLED"),
            expires_at: Some(None),
            ..AccountChanges::default()
        };
        let updated = store
            .update_account(AccountRef::ClientId("c1"), changes, 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.scopes, r#"["b:write"]"#);
        assert_eq!(updated.status, "DISABLED");
        assert_eq!(updated.expires_at, None);
        assert_eq!(
            (updated.name.as_str(), updated.description.as_str()),
            ("one", "d")
        );
        assert_eq!((updated.created_at, updated.updated_at), (10, 20));
        let rename = AccountChanges {
            name: Some("two".into()),
            ..AccountChanges::default()
        };
        let taken = store
            .update_account(AccountRef::ClientId("c1"), rename, 21)
            .await;
        assert!(matches!(taken, Err(Error::Conflict(_))));
        let missing = store
            .update_account(AccountRef::ClientId("nope"), AccountChanges::default(), 21)
            .await
            .unwrap();
        assert!(missing.is_none());
        assert_eq!(store.all_scopes().await.unwrap(), [r#"["a:read"]"#]);

        // secret rotation, with and without a grace period for the old secret
        let rotated = store
            .rotate_secret(AccountRef::ClientId("c2"), "h2", Some(50), 30)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rotated.secret_hash, "h2");
        assert_eq!(rotated.previous_secret_hash.as_deref(), Some("h1"));
        assert_eq!(rotated.previous_secret_expires_at, Some(50));
        assert_eq!(rotated.secret_rotated_at, Some(30));
        let rotated = store
            .rotate_secret(AccountRef::ClientId("c2"), "h3", None, 31)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rotated.secret_hash, "h3");
        assert_eq!(rotated.previous_secret_hash, None);
        assert_eq!(rotated.previous_secret_expires_at, None);

        // delete
        assert_eq!(
            store
                .delete_account(AccountRef::parse("svc_0000000000000002"))
                .await
                .unwrap(),
            Some("c2".into())
        );
        assert_eq!(
            store
                .delete_account(AccountRef::ClientId("c2"))
                .await
                .unwrap(),
            None
        );

        // signing keys: rotation retires the active key and forgets its private half
        assert!(store.keys().await.unwrap().is_empty());
        let version = store.version().await.unwrap();
        assert!(
            store
                .rotate_keys(&key_row("k1", 100), 100, 0, None)
                .await
                .unwrap()
        );
        assert!(
            store
                .rotate_keys(&key_row("k2", 200), 200, 900, None)
                .await
                .unwrap()
        );
        assert!(
            store.version().await.unwrap() > version,
            "key changes bump the version"
        );
        let keys = store.keys().await.unwrap();
        assert_eq!(
            keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["k1", "k2"]
        );
        assert_eq!(
            (keys[0].retired_at, keys[0].retire_at),
            (Some(200), Some(900))
        );
        assert_eq!(keys[0].private_key, None);
        assert_eq!(keys[1].private_key.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!((keys[1].retired_at, keys[1].retire_at), (None, None));
        // a first key while one is active (another replica won the race) is not stored
        assert!(!store.insert_first_key(&key_row("k3", 300)).await.unwrap());
        assert_eq!(store.keys().await.unwrap().len(), 2);
        assert_eq!(store.delete_retired_keys(899).await.unwrap(), 0);
        assert_eq!(store.delete_retired_keys(900).await.unwrap(), 1);
        assert_eq!(store.keys().await.unwrap().len(), 1);

        // publish-then-sign: k4 is published at 1000 and signs from 1010; k2 signs until then,
        // so it keeps its private half until the clean-up after 1010
        assert!(
            store
                .rotate_keys(&key_row("k4", 1000), 1010, 2000, None)
                .await
                .unwrap()
        );
        let keys = store.keys().await.unwrap();
        let (k2, k4) = (&keys[0], &keys[1]);
        assert_eq!((k2.retired_at, k2.retire_at), (Some(1010), Some(2000)));
        assert!(k2.private_key.is_some());
        assert_eq!((k4.activate_at, k4.retired_at), (Some(1010), None));
        store.delete_retired_keys(1009).await.unwrap();
        assert!(store.keys().await.unwrap()[0].private_key.is_some());
        store.delete_retired_keys(1010).await.unwrap();
        assert_eq!(store.keys().await.unwrap()[0].private_key, None);
        // a scheduled rotation finds a key newer than its threshold (another replica rotated)
        assert!(
            !store
                .rotate_keys(&key_row("k5", 1100), 1100, 3000, Some(1000))
                .await
                .unwrap()
        );
        assert_eq!(store.keys().await.unwrap().len(), 2);

        // every account change bumps the version too
        let version = store.version().await.unwrap();
        store
            .rotate_secret(AccountRef::ClientId("c1"), "h9", None, 40)
            .await
            .unwrap();
        assert!(store.version().await.unwrap() > version);
        store.close().await;
    }

    /// A SQLite file path under the temp dir, its files removed on drop.
    struct TempDb(std::path::PathBuf);

    impl TempDb {
        fn new(tag: &str) -> TempDb {
            TempDb(std::env::temp_dir().join(format!(
                "s2s-issuer-{tag}-{}-{:x}.db",
                std::process::id(),
                rand::random::<u64>()
            )))
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
            }
        }
    }

    #[tokio::test]
    async fn store_suite_sqlite_memory() {
        store_suite(Store::open(":memory:", None).await.unwrap()).await;
    }

    #[tokio::test]
    async fn store_suite_sqlite_file() {
        let db = TempDb::new("suite");
        store_suite(Store::open(db.path(), None).await.unwrap()).await;
    }

    /// Private keys are stored sealed (not the plaintext, bound to their kid), read back with
    /// the right key, and refused with a missing or wrong key by an error naming the setting.
    async fn private_keys_are_encrypted_at_rest(db: &str) {
        let store = Store::open(db, Some(test_kek())).await.unwrap();
        store
            .rotate_keys(&key_row("k1", 100), 100, 0, None)
            .await
            .unwrap();
        let raw: Vec<u8> = on_pool!(store, |pool| sqlx::query_scalar(
            "SELECT private_key FROM signing_keys WHERE kid = 'k1'"
        )
        .fetch_one(pool)
        .await)
        .unwrap();
        assert!(Kek::is_sealed(&raw));
        assert!(!raw.windows(3).any(|w| w == [1, 2, 3]), "{raw:?}");
        assert_eq!(test_kek().open("k2", &raw), None, "bound to its kid");
        assert_eq!(
            store.keys().await.unwrap()[0].private_key.as_deref(),
            Some(&[1u8, 2, 3][..])
        );
        store.close().await;

        let wrong = Kek::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        let store = Store::open(db, Some(wrong)).await.unwrap();
        let err = store.keys().await.err().unwrap().to_string();
        assert!(err.contains("key_encryption_key"), "{err}");
        assert!(err.contains("not the one"), "{err}");
        store.close().await;
        if !is_postgres(db) {
            let store = Store::open(db, None).await.unwrap();
            let err = store.keys().await.err().unwrap().to_string();
            assert!(err.contains("S2S_ISSUER_KEY_ENCRYPTION_KEY"), "{err}");
            store.close().await;
        }
    }

    #[tokio::test]
    async fn private_keys_are_encrypted_at_rest_sqlite() {
        private_keys_are_encrypted_at_rest(TempDb::new("kek").path()).await;
    }

    #[test]
    fn a_remote_postgres_server_needs_tls_or_an_explicit_opt_out() {
        for (db, host, env, ok) in [
            ("postgres://u@127.0.0.1/db", "127.0.0.1", None, true),
            ("postgres://u@localhost/db", "localhost", None, true),
            ("postgres://u@[::1]/db", "[::1]", None, true),
            (
                "postgres:///db?host=/run/postgresql",
                "/run/postgresql",
                None,
                true,
            ),
            ("postgres://u@db.internal/db", "db.internal", None, false),
            (
                "postgres://u@db.internal/db?sslmode=prefer",
                "db.internal",
                None,
                false,
            ),
            (
                "postgres://u@db.internal/db?sslmode=allow",
                "db.internal",
                None,
                false,
            ),
            (
                "postgres://u@10.0.0.5/db?sslmode=require",
                "10.0.0.5",
                None,
                true,
            ),
            (
                "postgres://u@db.internal/db?sslmode=verify-full",
                "db.internal",
                None,
                true,
            ),
            (
                "postgres://u@db.internal/db?sslmode=disable",
                "db.internal",
                None,
                true,
            ),
            (
                "postgres://u@db.internal/db",
                "db.internal",
                Some("verify-ca"),
                true,
            ),
            (
                "postgres://u@db.internal/db?sslmode=prefer",
                "db.internal",
                Some("require"),
                false,
            ),
        ] {
            let result = check_postgres_tls(db, host, env);
            assert_eq!(result.is_ok(), ok, "{db} (PGSSLMODE {env:?}): {result:?}");
            if let Err(e) = result {
                assert!(e.to_string().contains("sslmode=verify-full"), "{db}: {e}");
            }
        }
    }

    #[tokio::test]
    async fn private_keys_are_encrypted_at_rest_postgres() {
        let Some(db) = PgTestDb::create("private_keys_are_encrypted_at_rest_postgres").await else {
            return;
        };
        private_keys_are_encrypted_at_rest(&db.url).await;
        // PostgreSQL without a key-encryption key does not even open.
        let err = Store::open(&db.url, None).await.err().unwrap().to_string();
        assert!(err.contains("S2S_ISSUER_KEY_ENCRYPTION_KEY"), "{err}");
    }

    #[test]
    fn a_key_encryption_key_is_base64_of_32_bytes() {
        assert!(Kek::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
        let err = Kek::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err();
        assert!(err.contains("16 bytes"), "{err}");
        let err = Kek::from_base64("not base64!!").unwrap_err();
        assert!(!err.contains("not base64!!"), "{err}");
    }

    #[tokio::test]
    async fn store_suite_postgres() {
        let Some(db) = PgTestDb::create("store_suite_postgres").await else {
            return;
        };
        let store = Store::open(&db.url, Some(test_kek())).await.unwrap();
        assert!(store.is_shared());
        store_suite(store).await;
    }

    /// Replicas starting at the same moment on an empty database: the migrations run once
    /// (sqlx's advisory lock), every replica opens, and a later start finds nothing to do.
    #[tokio::test]
    async fn postgres_migrations_are_safe_when_replicas_start_at_once() {
        let Some(db) = PgTestDb::create("postgres_migrations_at_once").await else {
            return;
        };
        let opens = (0..4).map(|_| Store::open(&db.url, Some(test_kek())));
        let stores = futures_util::future::join_all(opens).await;
        for store in stores {
            let store = store.unwrap();
            assert!(store.keys().await.unwrap().is_empty());
            store.close().await;
        }
        let store = Store::open(&db.url, Some(test_kek())).await.unwrap();
        let Pool::Postgres(pool) = &store.pool else {
            unreachable!()
        };
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(applied, 2);
        store.close().await;
    }

    /// A database made before the service-account-id migration gets an id for every account
    /// (unique, `svc_` + 16 hex), no expiry, and can be addressed by either id afterwards.
    #[tokio::test]
    async fn accounts_of_an_older_database_get_service_account_ids() {
        let path = std::env::temp_dir().join(format!(
            "s2s-issuer-migration-{}-{:x}.db",
            std::process::id(),
            rand::random::<u64>()
        ));
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let mut first_only = sqlx::migrate!("./migrations/sqlite");
        first_only.migrations = first_only.migrations[..1].to_vec().into();
        first_only.run(&pool).await.unwrap();
        for (client_id, name) in [("c1", "one"), ("c2", "two")] {
            sqlx::query(
                "INSERT INTO accounts (client_id, name, status, secret_hash, created_at, \
                 updated_at) VALUES (?, ?, 'ACTIVE', 'h', 1, 1)",
            )
            .bind(client_id)
            .bind(name)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let store = Store::open(path.to_str().unwrap(), None).await.unwrap();
        let one = store
            .account(AccountRef::ClientId("c1"))
            .await
            .unwrap()
            .unwrap();
        let two = store
            .account(AccountRef::ClientId("c2"))
            .await
            .unwrap()
            .unwrap();
        for row in [&one, &two] {
            let hex = row.service_account_id.strip_prefix("svc_").unwrap();
            assert_eq!(hex.len(), 16, "{}", row.service_account_id);
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(row.expires_at, None);
        }
        assert_ne!(one.service_account_id, two.service_account_id);
        let by_svc = store
            .account(AccountRef::parse(&one.service_account_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_svc.client_id, "c1");
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}

//! Storage: SQLite through sqlx, with embedded migrations.
//!
//! A file is opened in WAL mode with `synchronous=FULL`: a write is on disk before the call that
//! made it returns, so an acknowledged change survives `kill -9` or a power cut. `:memory:` keeps
//! everything in one connection that lives as long as the issuer (for tests and demos).

use std::{str::FromStr as _, time::Duration};

use sqlx::{
    FromRow, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::Error;

/// The database handle.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pool: SqlitePool,
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
    pub(crate) retired_at: Option<i64>,
    pub(crate) retire_at: Option<i64>,
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
    pub(crate) async fn open(db: &str) -> Result<Store, Error> {
        let db = db.trim();
        if db.starts_with("postgres:") || db.starts_with("postgresql:") {
            return Err(Error::Config {
                field: "db".into(),
                message: "PostgreSQL is not supported by this build; use a SQLite path".into(),
            });
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
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Closes the connections (waits for them to finish).
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    // ---- accounts ----

    pub(crate) async fn insert_account(&self, row: NewAccountRow<'_>) -> Result<AccountRow, Error> {
        sqlx::query_as::<_, AccountRow>(
            "INSERT INTO accounts (service_account_id, client_id, name, description, scopes, \
             allowed_ips, audiences, status, secret_hash, expires_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'ACTIVE', ?, ?, ?, ?) RETURNING *",
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
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                Error::Conflict(format!("a service account named `{}` exists", row.name))
            } else {
                e.into()
            }
        })
    }

    pub(crate) async fn account(&self, id: AccountRef<'_>) -> Result<Option<AccountRow>, Error> {
        let query = format!("SELECT * FROM accounts WHERE {} = ?", id.column());
        Ok(sqlx::query_as::<_, AccountRow>(&query)
            .bind(id.value())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Accounts with `id > after`, in creation order.
    pub(crate) async fn accounts_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AccountRow>, Error> {
        Ok(sqlx::query_as::<_, AccountRow>(
            "SELECT * FROM accounts WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The `scopes` column of every active account.
    pub(crate) async fn all_scopes(&self) -> Result<Vec<String>, Error> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT scopes FROM accounts WHERE status = 'ACTIVE'")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub(crate) async fn update_account(
        &self,
        id: AccountRef<'_>,
        changes: AccountChanges,
        now: i64,
    ) -> Result<Option<AccountRow>, Error> {
        let name = changes.name.clone();
        let query = format!(
            "UPDATE accounts SET name = COALESCE(?, name), description = COALESCE(?, description), \
             scopes = COALESCE(?, scopes), allowed_ips = COALESCE(?, allowed_ips), \
             audiences = COALESCE(?, audiences), status = COALESCE(?, status), \
             expires_at = CASE WHEN ? THEN ? ELSE expires_at END, updated_at = ? \
             WHERE {} = ? RETURNING *",
            id.column()
        );
        sqlx::query_as::<_, AccountRow>(&query)
            .bind(changes.name)
            .bind(changes.description)
            .bind(changes.scopes)
            .bind(changes.allowed_ips)
            .bind(changes.audiences)
            .bind(changes.status)
            .bind(changes.expires_at.is_some())
            .bind(changes.expires_at.flatten())
            .bind(now)
            .bind(id.value())
            .fetch_optional(&self.pool)
            .await
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
             previous_secret_hash = CASE WHEN ?1 IS NULL THEN NULL ELSE secret_hash END, \
             previous_secret_expires_at = ?1, secret_hash = ?2, secret_rotated_at = ?3, \
             updated_at = ?3 WHERE {} = ?4 RETURNING *",
            id.column()
        );
        Ok(sqlx::query_as::<_, AccountRow>(&query)
            .bind(previous_expires_at)
            .bind(new_hash)
            .bind(now)
            .bind(id.value())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Deletes an account; its client id when it existed.
    pub(crate) async fn delete_account(&self, id: AccountRef<'_>) -> Result<Option<String>, Error> {
        let query = format!(
            "DELETE FROM accounts WHERE {} = ? RETURNING client_id",
            id.column()
        );
        Ok(sqlx::query_scalar::<_, String>(&query)
            .bind(id.value())
            .fetch_optional(&self.pool)
            .await?)
    }

    // ---- signing keys ----

    pub(crate) async fn keys(&self) -> Result<Vec<KeyRow>, Error> {
        Ok(
            sqlx::query_as::<_, KeyRow>("SELECT * FROM signing_keys ORDER BY created_at, kid")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Retires the active key(s) (publishing them until `retire_at`, forgetting their private
    /// halves) and makes `new` the active one, in one transaction.
    pub(crate) async fn rotate_keys(&self, new: &KeyRow, retire_at: i64) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = ?, retire_at = ?, private_key = NULL \
             WHERE retired_at IS NULL",
        )
        .bind(new.created_at)
        .bind(retire_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&new.kid)
        .bind(&new.alg)
        .bind(&new.private_key)
        .bind(&new.public_jwk)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes rotated-out keys whose publication ended at or before `now`.
    pub(crate) async fn delete_retired_keys(&self, now: i64) -> Result<u64, Error> {
        Ok(
            sqlx::query("DELETE FROM signing_keys WHERE retire_at IS NOT NULL AND retire_at <= ?")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut first_only = sqlx::migrate!("./migrations");
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

        let store = Store::open(path.to_str().unwrap()).await.unwrap();
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

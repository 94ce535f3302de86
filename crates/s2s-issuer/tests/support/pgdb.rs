//! Test databases: a fresh PostgreSQL database per test on `S2S_TEST_POSTGRES_URL`, shared by
//! the unit tests (`store.rs`) and the replica suite (`tests/replicas.rs`).

#![allow(dead_code, unreachable_pub)]

use sqlx::{Connection as _, Executor as _, PgConnection};

/// The server tests use unless `S2S_TEST_POSTGRES_URL` names another.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database `s2s_test_<random>` created for one test and dropped (even after a panic)
/// when this is dropped.
pub struct PgTestDb {
    admin: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl PgTestDb {
    /// Creates the database; `None` (after a loud SKIPPED banner) when no server answers,
    /// unless `CI=true`, where a missing server fails the test.
    pub async fn create(test: &str) -> Option<PgTestDb> {
        let admin = std::env::var("S2S_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!(
                    "\n=========== SKIPPED {test}: no PostgreSQL at S2S_TEST_POSTGRES_URL \
                     (default {DEFAULT_URL}): {e} ===========\n"
                );
                return None;
            }
            Err(e) => panic!("CI=true and no PostgreSQL for {test}: {e}"),
        };
        let name = format!("s2s_test_{:016x}", rand::random::<u64>());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin).expect("S2S_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(PgTestDb {
            admin,
            name,
            url: url.into(),
        })
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A thread of its own: drop may run inside (or outside) a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

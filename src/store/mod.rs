//! The store: accounts and what partners onboard over the management API (trunks and
//! their numbers, allow-lists, destinations, settings and digest credentials), in
//! SQLite (`sqlite://callflow.db`, created and migrated on first start) or PostgreSQL
//! (`postgres://…`), through one code path (sqlx's `Any` driver) and one set of
//! migrations. Every write that touches more than one row is a transaction.

pub mod accounts;
pub mod calls;
pub mod carriers;
pub mod flows;
pub mod schema;
pub mod trunks;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use accounts::NewAccount;
pub use trunks::{Credential, Destination, NumberRow, StoredTrunk, TrunkRow, WhitelistedIp};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    /// The URL names no database callflow supports.
    #[error("store: '{0}' is neither sqlite:// nor postgres://")]
    Url(String),
    /// A unique value (a phone number, an account's key) is taken.
    #[error("{0} already exists")]
    Duplicate(String),
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Whether it is PostgreSQL (else SQLite).
    postgres: bool,
}

/// A random id: `prefix` and 32 hex digits (128 bits, unguessable).
pub fn new_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Store {
    /// Opens (creating a SQLite file when missing) and migrates the store at `url`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.contains('?') {
                url.to_string()
            } else {
                format!("sqlite://{path}?mode=rwc")
            }
        } else if postgres {
            url.to_string()
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await?;
        let store = Store { pool, postgres };
        schema::migrate(&store.pool, postgres).await?;
        Ok(store)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// A transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails
    /// at once with SQLITE_BUSY when another connection wrote in between (a call
    /// record stored meanwhile), which the busy timeout does not cover.
    pub(crate) async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        if self.postgres {
            self.pool.begin().await
        } else {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        }
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A text column.
pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, sqlx::Error> {
    row.try_get::<String, _>(col)
}

/// An integer column.
pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64, sqlx::Error> {
    row.try_get::<i64, _>(col)
}

/// A nullable text column.
pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get::<Option<String>, _>(col)
}

/// Maps a unique-constraint violation to [`StoreError::Duplicate`] naming `what`.
pub(crate) fn unique(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Duplicate(what.to_string())
        }
        _ => StoreError::Db(e),
    }
}

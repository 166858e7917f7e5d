//! The operator's carriers, created over the admin API beside those of
//! `callflow.yaml`.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, int, now, text, unique};

/// A carrier as stored.
#[derive(Debug, Clone, Serialize)]
pub struct CarrierRow {
    /// Its name.
    pub name: String,
    /// Where its calls go.
    pub uri: String,
    /// Where its INVITEs come from (CIDR).
    pub addresses: Vec<String>,
    /// Lower first.
    pub priority: i64,
    /// Most simultaneous calls.
    pub max_channels: Option<i64>,
}

impl Store {
    /// Adds a carrier.
    pub async fn add_carrier(&self, c: &CarrierRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO carriers (name, uri, addresses, priority, max_channels, created) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&c.name)
            .bind(&c.uri)
            .bind(c.addresses.join(","))
            .bind(c.priority)
            .bind(c.max_channels)
            .bind(now())
            .execute(self.pool())
            .await
            .map_err(|e| unique(e, &format!("carrier {}", c.name)))?;
        Ok(())
    }

    /// Every stored carrier, by priority.
    pub async fn carriers(&self) -> Result<Vec<CarrierRow>, StoreError> {
        let rows = sqlx::query("SELECT name, uri, addresses, priority, max_channels FROM carriers ORDER BY priority, name")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let addresses = text(r, "addresses")?;
                Ok(CarrierRow {
                    name: text(r, "name")?,
                    uri: text(r, "uri")?,
                    addresses: addresses
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect(),
                    priority: int(r, "priority")?,
                    max_channels: r.try_get::<Option<i64>, _>("max_channels")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Db)
    }

    /// Deletes carrier `name`; false when there is none.
    pub async fn delete_carrier(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM carriers WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

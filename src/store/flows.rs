//! Flows uploaded by accounts: every PUT is a new version (the YAML as sent, compiled
//! before it is stored); a call keeps the version it started with. Deleting a flow
//! writes a tombstone version, so versions are never reused.

use serde::Serialize;

use super::{Store, StoreError, int, now, text};

/// One version of an account's flow.
#[derive(Debug, Clone, Serialize)]
pub struct StoredFlow {
    /// The owning account.
    pub account_sid: String,
    /// The flow's id.
    pub flow_id: String,
    /// 1, 2, … per PUT.
    pub version: i64,
    /// The YAML as uploaded.
    pub yaml: String,
}

/// The id routing knows an account's flow by: `AC…/flow_id` (flows of different
/// accounts never collide, nor with the file's).
pub fn routing_id(account: &str, id: &str) -> String {
    format!("{account}/{id}")
}

impl Store {
    /// Stores a new version of `account`'s flow `id`; its version number.
    pub async fn put_flow(&self, account: &str, id: &str, yaml: &str) -> Result<i64, StoreError> {
        self.insert_version(account, id, yaml, false).await
    }

    /// Adds a version (a tombstone when `deleted`) in one transaction.
    async fn insert_version(
        &self,
        account: &str,
        id: &str,
        yaml: &str,
        deleted: bool,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write().await?;
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM flows WHERE account_sid = $1 AND flow_id = $2",
        )
        .bind(account)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let version = last.unwrap_or(0) + 1;
        sqlx::query("INSERT INTO flows (account_sid, flow_id, version, yaml, deleted, created) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(account)
            .bind(id)
            .bind(version)
            .bind(yaml)
            .bind(i64::from(deleted))
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// The latest version of every live flow (of `account`, or of all accounts).
    pub async fn flows(&self, account: Option<&str>) -> Result<Vec<StoredFlow>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.account_sid, f.flow_id, f.version, f.yaml, f.deleted FROM flows f
             WHERE f.version = (SELECT MAX(g.version) FROM flows g WHERE g.account_sid = f.account_sid AND g.flow_id = f.flow_id)
             AND ($1 = '' OR f.account_sid = $1)
             ORDER BY f.account_sid, f.flow_id",
        )
        .bind(account.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            if int(r, "deleted")? != 0 {
                continue;
            }
            out.push(StoredFlow {
                account_sid: text(r, "account_sid")?,
                flow_id: text(r, "flow_id")?,
                version: int(r, "version")?,
                yaml: text(r, "yaml")?,
            });
        }
        Ok(out)
    }

    /// The latest version of `account`'s flow `id`, unless deleted.
    pub async fn flow(&self, account: &str, id: &str) -> Result<Option<StoredFlow>, StoreError> {
        Ok(self
            .flows(Some(account))
            .await?
            .into_iter()
            .find(|f| f.flow_id == id))
    }

    /// Deletes `account`'s flow `id` (a tombstone version); false when there is none.
    pub async fn delete_flow(&self, account: &str, id: &str) -> Result<bool, StoreError> {
        if self.flow(account, id).await?.is_none() {
            return Ok(false);
        }
        self.insert_version(account, id, "", true).await?;
        Ok(true)
    }

    /// Whether a number of one of `account`'s trunks points at flow `id`.
    pub async fn flow_in_use(&self, account: &str, id: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM numbers n JOIN trunks t ON n.trunk_sid = t.sid WHERE t.account_sid = $1 AND n.mode = 'flow' AND n.flow_id = $2",
        )
        .bind(account)
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }
}

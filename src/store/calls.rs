//! Call records: every call's record (applets, webhooks, legs, status callback
//! attempts), written when the call ends, read back by account with filters and a
//! cursor that stays put while new calls arrive, and deleted after the retention.

use crate::runtime::{CallRecord, CallbackAttempt};

use super::{Store, StoreError, text};

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Created at or after (seconds since the epoch).
    pub created_from: Option<i64>,
    /// Created at or before.
    pub created_to: Option<i64>,
    /// `completed`, `failed`, `busy`, `no-answer`, `canceled`.
    pub status: Option<String>,
    /// The caller's number.
    pub from: Option<String>,
    /// The dialled number.
    pub to: Option<String>,
    /// `incoming`, `outbound-dial`, `outbound-api`.
    pub direction: Option<String>,
}

/// Where a page starts: after the call created at `created` with sid `sid` (newest
/// first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Seconds since the epoch.
    pub created: i64,
    /// The call's sid.
    pub sid: String,
}

impl Cursor {
    /// As a URL-safe string.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.created, self.sid)
    }

    /// From [`Cursor::encode`]'s form.
    pub fn decode(s: &str) -> Option<Cursor> {
        let (created, sid) = s.split_once('_')?;
        let sid_ok =
            !sid.is_empty() && sid.len() <= 64 && sid.bytes().all(|b| b.is_ascii_alphanumeric());
        Some(Cursor {
            created: created.parse().ok()?,
            sid: sid.to_string(),
        })
        .filter(|_| sid_ok)
    }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Writes a call's record.
    pub async fn insert_call(&self, r: &CallRecord) -> Result<(), StoreError> {
        let json = r.to_json();
        sqlx::query("INSERT INTO calls (sid, account_sid, direction, from_number, to_number, status, created, duration, flow_id, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(&r.call_sid)
            .bind(r.account_sid.clone())
            .bind(&r.direction)
            .bind(&r.from)
            .bind(&r.to)
            .bind(r.status.as_str())
            .bind(i64_of(r.created_unix))
            .bind(i64_of(r.duration_secs))
            .bind(&r.flow_id)
            .bind(json)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Replaces a stored record's status callback attempts.
    pub async fn set_callbacks(
        &self,
        sid: &str,
        attempts: &[CallbackAttempt],
    ) -> Result<(), StoreError> {
        let Some(mut record) = self.call_record(sid).await? else {
            return Ok(());
        };
        record["callbacks"] = serde_json::json!(attempts);
        sqlx::query("UPDATE calls SET record = $1 WHERE sid = $2")
            .bind(record.to_string())
            .bind(sid)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The stored record of call `sid`, whatever its account (the operator's view).
    pub async fn call_record(&self, sid: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let row = sqlx::query("SELECT record FROM calls WHERE sid = $1")
            .bind(sid)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(serde_json::from_str(&text(&row, "record")?).ok())
    }

    /// Call `sid` of `account`, as its record's JSON.
    pub async fn call(
        &self,
        account: &str,
        sid: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let row = sqlx::query("SELECT record FROM calls WHERE sid = $1 AND account_sid = $2")
            .bind(sid)
            .bind(account)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(serde_json::from_str(&text(&row, "record")?).ok())
    }

    /// `account`'s calls matching `filter`, newest first, at most `limit`, after
    /// `cursor`.
    pub async fn calls(
        &self,
        account: &str,
        filter: &CallFilter,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let (c_created, c_sid) =
            cursor.map_or((i64::MAX, "~".to_string()), |c| (c.created, c.sid.clone()));
        let rows = sqlx::query(
            "SELECT record FROM calls WHERE account_sid = $1
               AND created >= $2 AND created <= $3
               AND ($4 = '' OR status = $4) AND ($5 = '' OR from_number = $5)
               AND ($6 = '' OR to_number = $6) AND ($7 = '' OR direction = $7)
               AND (created < $8 OR (created = $8 AND sid < $9))
             ORDER BY created DESC, sid DESC LIMIT $10",
        )
        .bind(account)
        .bind(filter.created_from.unwrap_or(0))
        .bind(filter.created_to.unwrap_or(i64::MAX))
        .bind(filter.status.clone().unwrap_or_default())
        .bind(filter.from.clone().unwrap_or_default())
        .bind(filter.to.clone().unwrap_or_default())
        .bind(filter.direction.clone().unwrap_or_default())
        .bind(c_created)
        .bind(c_sid)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Ok(v) = serde_json::from_str(&text(r, "record")?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Deletes the records of calls created before `before`; how many.
    pub async fn prune_calls(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM calls WHERE created < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

//! Accounts: an operator creates them; each gets a key and a token for HTTP Basic
//! authentication. The token is shown once and stored only as its SHA-256 (a random
//! 192-bit token needs no slow hash).

use sha2::{Digest, Sha256};

use super::{Store, StoreError, new_sid, now, text, unique};

/// A new account's credentials, shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewAccount {
    /// The account's sid, `AC…`.
    pub account_sid: String,
    /// Its name.
    pub name: String,
    /// The Basic-auth user name.
    pub api_key: String,
    /// The Basic-auth password (not stored).
    pub api_token: String,
}

fn constant_time_eq_str(a: &str, b: &str) -> bool {
    crate::sip::digest::constant_time_eq(a.as_bytes(), b.as_bytes())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Creates an account named `name`.
    pub async fn create_account(&self, name: &str) -> Result<NewAccount, StoreError> {
        let account = NewAccount {
            account_sid: new_sid("AC"),
            name: name.to_string(),
            api_key: format!("{:032x}", rand::random::<u128>()),
            api_token: format!(
                "{:032x}{:016x}",
                rand::random::<u128>(),
                rand::random::<u64>()
            ),
        };
        sqlx::query(
            "INSERT INTO accounts (sid, name, api_key, token_hash, created) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&account.account_sid)
        .bind(name)
        .bind(&account.api_key)
        .bind(token_hash(&account.api_token))
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(|e| unique(e, "account"))?;
        Ok(account)
    }

    /// Whether `key`:`token` are the credentials of account `sid`.
    pub async fn authenticate(
        &self,
        sid: &str,
        key: &str,
        token: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT api_key, token_hash FROM accounts WHERE sid = $1")
            .bind(sid)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            // Spend the same work as for a real account.
            let _ = constant_time_eq_str(&token_hash(token), &token_hash(key));
            return Ok(false);
        };
        let key_ok = constant_time_eq_str(&text(&row, "api_key")?, key);
        let token_ok = constant_time_eq_str(&text(&row, "token_hash")?, &token_hash(token));
        Ok(key_ok & token_ok)
    }
}

/// An account's call caps (`None`: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AccountLimits {
    /// Most calls in progress at once.
    pub max_concurrent_calls: Option<i64>,
    /// Most calls started in one UTC day.
    pub max_calls_per_day: Option<i64>,
}

impl Store {
    /// Sets account `sid`'s caps; false when there is no such account.
    pub async fn set_account_limits(
        &self,
        sid: &str,
        limits: AccountLimits,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE accounts SET max_concurrent_calls = $1, max_calls_per_day = $2 WHERE sid = $3",
        )
        .bind(limits.max_concurrent_calls)
        .bind(limits.max_calls_per_day)
        .bind(sid)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every account's caps, by sid (accounts without any are left out).
    pub async fn account_limits(
        &self,
    ) -> Result<std::collections::HashMap<String, AccountLimits>, StoreError> {
        let rows = sqlx::query(
            "SELECT sid, max_concurrent_calls, max_calls_per_day FROM accounts WHERE max_concurrent_calls IS NOT NULL OR max_calls_per_day IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = std::collections::HashMap::new();
        for r in rows {
            use sqlx::Row;
            out.insert(
                text(&r, "sid")?,
                AccountLimits {
                    max_concurrent_calls: r.try_get("max_concurrent_calls")?,
                    max_calls_per_day: r.try_get("max_calls_per_day")?,
                },
            );
        }
        Ok(out)
    }
}

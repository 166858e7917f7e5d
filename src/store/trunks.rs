//! Trunks and what hangs off them, each read and written within one account: a trunk
//! of another account is as absent as one that does not exist.

use serde::Serialize;
use sqlx::any::AnyRow;

use super::{Store, StoreError, int, new_sid, now, opt_text, text, unique};

/// A trunk.
#[derive(Debug, Clone, Serialize)]
pub struct TrunkRow {
    /// `TK…`.
    pub trunk_sid: String,
    /// The owning account.
    pub account_sid: String,
    /// Its name (≤16 letters, digits, `_`).
    pub trunk_name: String,
    /// The operator's network code.
    pub nso_code: Option<String>,
    /// The partner's domain.
    pub domain_name: Option<String>,
    /// Request-URI user on calls to the trunk.
    pub trunk_external_alias: Option<String>,
    /// Most simultaneous calls.
    pub max_channels: Option<i64>,
    /// Most new calls per second.
    pub max_cps: Option<i64>,
    /// E.164 prefixes the trunk's calls may reach (empty: any), comma-separated.
    pub allowed_destinations: Option<String>,
    /// Longest call, in seconds.
    pub max_call_duration: Option<i64>,
    /// Whether its credentials may be answered with MD5 (1).
    pub allow_md5: Option<i64>,
    /// When its legs get SRTP: `tls` (absent) or `required`.
    pub srtp: Option<String>,
    /// The codecs it takes, comma-separated (empty: PCMA and PCMU).
    pub codecs: Option<String>,
    /// Seconds since the epoch.
    pub date_created: i64,
}

/// Settings of a trunk to change; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct TrunkSettings {
    /// Request-URI user on calls to the trunk.
    pub alias: Option<String>,
    /// Most simultaneous calls.
    pub max_channels: Option<i64>,
    /// Most new calls per second.
    pub max_cps: Option<i64>,
    /// Allowed E.164 prefixes, comma-separated (empty: any).
    pub allowed_destinations: Option<String>,
    /// Longest call, seconds.
    pub max_call_duration: Option<i64>,
    /// Whether its credentials may be answered with MD5 (1) or not (0).
    pub allow_md5: Option<i64>,
    /// `tls` or `required`.
    pub srtp: Option<String>,
    /// Codecs, comma-separated.
    pub codecs: Option<String>,
}

/// A phone number of a trunk.
#[derive(Debug, Clone, Serialize)]
pub struct NumberRow {
    /// `PN…`.
    pub id: String,
    /// E.164.
    pub phone_number: String,
    /// `flow` or `pstn`.
    pub mode: String,
    /// The flow, in flow mode.
    pub flow_id: Option<String>,
}

/// An allowed source of a trunk's outbound calls.
#[derive(Debug, Clone, Serialize)]
pub struct WhitelistedIp {
    /// `IP…`.
    pub id: String,
    /// The address.
    pub ip: String,
    /// The prefix length.
    pub mask: i64,
}

/// A destination URI of a trunk.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// `DU…`.
    pub id: String,
    /// `sip:host:port;transport=…`.
    pub destination: String,
    /// Lower first.
    pub priority: i64,
    /// Share among equal priorities.
    pub weight: i64,
}

/// Digest credentials of a trunk: only what verification needs.
#[derive(Debug, Clone, Serialize)]
pub struct Credential {
    /// `CR…`.
    pub id: String,
    /// The digest user name.
    pub user_name: String,
    /// A label.
    pub friendly_name: Option<String>,
    /// MD5(user:realm:password).
    #[serde(skip)]
    pub ha1_md5: String,
    /// SHA-256(user:realm:password).
    #[serde(skip)]
    pub ha1_sha256: String,
}

/// A trunk with everything routing needs.
#[derive(Debug, Clone)]
pub struct StoredTrunk {
    /// The trunk.
    pub trunk: TrunkRow,
    /// Its numbers.
    pub numbers: Vec<NumberRow>,
    /// Its allowed sources.
    pub ips: Vec<WhitelistedIp>,
    /// Its destinations.
    pub destinations: Vec<Destination>,
    /// Its credentials.
    pub credentials: Vec<Credential>,
}

fn trunk_row(r: &AnyRow) -> Result<TrunkRow, sqlx::Error> {
    Ok(TrunkRow {
        trunk_sid: text(r, "sid")?,
        account_sid: text(r, "account_sid")?,
        trunk_name: text(r, "name")?,
        nso_code: opt_text(r, "nso_code")?,
        domain_name: opt_text(r, "domain_name")?,
        trunk_external_alias: opt_text(r, "external_alias")?,
        max_channels: r.try_get_opt("max_channels")?,
        max_cps: r.try_get_opt("max_cps")?,
        allowed_destinations: opt_text(r, "allowed_destinations")?,
        max_call_duration: r.try_get_opt("max_call_duration")?,
        allow_md5: r.try_get_opt("allow_md5")?,
        srtp: opt_text(r, "srtp")?,
        codecs: opt_text(r, "codecs")?,
        date_created: int(r, "created")?,
    })
}

/// An optional integer column.
trait OptInt {
    fn try_get_opt(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
}

impl OptInt for AnyRow {
    fn try_get_opt(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::Row::try_get::<Option<i64>, _>(self, col)
    }
}

const TRUNK_COLUMNS: &str = "sid, account_sid, name, nso_code, domain_name, external_alias, max_channels, max_cps, allowed_destinations, max_call_duration, allow_md5, srtp, codecs, created";

/// The children of a trunk, for `DELETE … WHERE trunk_sid`.
const CHILDREN: [&str; 4] = ["numbers", "whitelisted_ips", "destinations", "credentials"];

impl Store {
    /// Creates a trunk of `account`.
    pub async fn create_trunk(
        &self,
        account: &str,
        name: &str,
        nso_code: Option<&str>,
        domain_name: Option<&str>,
    ) -> Result<TrunkRow, StoreError> {
        let sid = new_sid("TK");
        sqlx::query(
            "INSERT INTO trunks (sid, account_sid, name, nso_code, domain_name, created) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&sid)
        .bind(account)
        .bind(name)
        .bind(nso_code.map(str::to_string))
        .bind(domain_name.map(str::to_string))
        .bind(now())
        .execute(self.pool())
        .await?;
        self.trunk(account, &sid)
            .await?
            .ok_or(StoreError::Db(sqlx::Error::RowNotFound))
    }

    /// Trunk `sid` of `account`.
    pub async fn trunk(&self, account: &str, sid: &str) -> Result<Option<TrunkRow>, StoreError> {
        let q = format!("SELECT {TRUNK_COLUMNS} FROM trunks WHERE sid = $1 AND account_sid = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(sid)
            .bind(account)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(trunk_row).transpose()?)
    }

    /// The trunks of `account`, oldest first, `limit` from `offset`.
    pub async fn trunks(
        &self,
        account: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<TrunkRow>, StoreError> {
        let q = format!(
            "SELECT {TRUNK_COLUMNS} FROM trunks WHERE account_sid = $1 ORDER BY created, sid LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(account)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(trunk_row).collect::<Result<_, _>>()?)
    }

    /// Deletes trunk `sid` of `account` and everything that hangs off it.
    pub async fn delete_trunk(&self, account: &str, sid: &str) -> Result<bool, StoreError> {
        if self.trunk(account, sid).await?.is_none() {
            return Ok(false);
        }
        let mut tx = self.write().await?;
        for table in CHILDREN {
            // Table names are constants, never input.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE trunk_sid = $1"
            )))
            .bind(sid)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM trunks WHERE sid = $1")
            .bind(sid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets the trunk's settings (each `None` left as is).
    pub async fn set_trunk_settings(&self, sid: &str, s: &TrunkSettings) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE trunks SET external_alias = COALESCE($1, external_alias), max_channels = COALESCE($2, max_channels), max_cps = COALESCE($3, max_cps), allowed_destinations = COALESCE($4, allowed_destinations), max_call_duration = COALESCE($5, max_call_duration), allow_md5 = COALESCE($6, allow_md5), srtp = COALESCE($7, srtp), codecs = COALESCE($8, codecs) WHERE sid = $9",
        )
        .bind(s.alias.clone())
        .bind(s.max_channels)
        .bind(s.max_cps)
        .bind(s.allowed_destinations.clone())
        .bind(s.max_call_duration)
        .bind(s.allow_md5)
        .bind(s.srtp.clone())
        .bind(s.codecs.clone())
        .bind(sid)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Maps `number` to trunk `sid`; a number belongs to one trunk in the whole system.
    pub async fn add_number(
        &self,
        sid: &str,
        number: &str,
        mode: &str,
        flow: Option<&str>,
    ) -> Result<NumberRow, StoreError> {
        let row = NumberRow {
            id: new_sid("PN"),
            phone_number: number.to_string(),
            mode: mode.to_string(),
            flow_id: flow.map(str::to_string),
        };
        sqlx::query(
            "INSERT INTO numbers (id, trunk_sid, number, mode, flow_id, created) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(sid)
        .bind(number)
        .bind(mode)
        .bind(row.flow_id.clone())
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(|e| unique(e, &format!("phone number {number}")))?;
        Ok(row)
    }

    /// Changes a number's mode and flow; false when trunk `sid` has no such number.
    pub async fn update_number(
        &self,
        sid: &str,
        id: &str,
        mode: &str,
        flow: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE numbers SET mode = $1, flow_id = $2 WHERE id = $3 AND trunk_sid = $4",
        )
        .bind(mode)
        .bind(flow.map(str::to_string))
        .bind(id)
        .bind(sid)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The numbers of trunk `sid`.
    pub async fn numbers(&self, sid: &str) -> Result<Vec<NumberRow>, StoreError> {
        let rows = sqlx::query("SELECT id, number, mode, flow_id FROM numbers WHERE trunk_sid = $1 ORDER BY created, id")
            .bind(sid)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(NumberRow {
                    id: text(r, "id")?,
                    phone_number: text(r, "number")?,
                    mode: text(r, "mode")?,
                    flow_id: opt_text(r, "flow_id")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Db)
    }

    /// Adds an allowed source to trunk `sid`.
    pub async fn add_ip(
        &self,
        sid: &str,
        ip: &str,
        mask: i64,
    ) -> Result<WhitelistedIp, StoreError> {
        let row = WhitelistedIp {
            id: new_sid("IP"),
            ip: ip.to_string(),
            mask,
        };
        sqlx::query("INSERT INTO whitelisted_ips (id, trunk_sid, ip, mask, created) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.id)
            .bind(sid)
            .bind(ip)
            .bind(mask)
            .bind(now())
            .execute(self.pool())
            .await?;
        Ok(row)
    }

    /// The allowed sources of trunk `sid`.
    pub async fn ips(&self, sid: &str) -> Result<Vec<WhitelistedIp>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, ip, mask FROM whitelisted_ips WHERE trunk_sid = $1 ORDER BY created, id",
        )
        .bind(sid)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WhitelistedIp {
                    id: text(r, "id")?,
                    ip: text(r, "ip")?,
                    mask: int(r, "mask")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Db)
    }

    /// Adds a destination to trunk `sid`.
    pub async fn add_destination(
        &self,
        sid: &str,
        uri: &str,
        priority: i64,
        weight: i64,
    ) -> Result<Destination, StoreError> {
        let row = Destination {
            id: new_sid("DU"),
            destination: uri.to_string(),
            priority,
            weight,
        };
        sqlx::query("INSERT INTO destinations (id, trunk_sid, uri, priority, weight, created) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&row.id)
            .bind(sid)
            .bind(uri)
            .bind(priority)
            .bind(weight)
            .bind(now())
            .execute(self.pool())
            .await?;
        Ok(row)
    }

    /// The destinations of trunk `sid`.
    pub async fn destinations(&self, sid: &str) -> Result<Vec<Destination>, StoreError> {
        let rows = sqlx::query("SELECT id, uri, priority, weight FROM destinations WHERE trunk_sid = $1 ORDER BY created, id")
            .bind(sid)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Destination {
                    id: text(r, "id")?,
                    destination: text(r, "uri")?,
                    priority: int(r, "priority")?,
                    weight: int(r, "weight")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Db)
    }

    /// Adds digest credentials (their HA1 hashes) to trunk `sid`.
    pub async fn add_credential(
        &self,
        sid: &str,
        user: &str,
        friendly: Option<&str>,
        ha1_md5: &str,
        ha1_sha256: &str,
    ) -> Result<Credential, StoreError> {
        let row = Credential {
            id: new_sid("CR"),
            user_name: user.to_string(),
            friendly_name: friendly.map(str::to_string),
            ha1_md5: ha1_md5.to_string(),
            ha1_sha256: ha1_sha256.to_string(),
        };
        sqlx::query("INSERT INTO credentials (id, trunk_sid, user_name, friendly_name, ha1_md5, ha1_sha256, created) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&row.id)
            .bind(sid)
            .bind(user)
            .bind(row.friendly_name.clone())
            .bind(ha1_md5)
            .bind(ha1_sha256)
            .bind(now())
            .execute(self.pool())
            .await?;
        Ok(row)
    }

    /// The credentials of trunk `sid`.
    pub async fn credentials(&self, sid: &str) -> Result<Vec<Credential>, StoreError> {
        let rows = sqlx::query("SELECT id, user_name, friendly_name, ha1_md5, ha1_sha256 FROM credentials WHERE trunk_sid = $1 ORDER BY created, id")
            .bind(sid)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Credential {
                    id: text(r, "id")?,
                    user_name: text(r, "user_name")?,
                    friendly_name: opt_text(r, "friendly_name")?,
                    ha1_md5: text(r, "ha1_md5")?,
                    ha1_sha256: text(r, "ha1_sha256")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Db)
    }

    /// Deletes row `id` of trunk `sid` from one of its lists (`numbers`,
    /// `whitelisted_ips`, `destinations`, `credentials`); false when there is none.
    pub async fn delete_child(
        &self,
        table: Child,
        sid: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let q = format!(
            "DELETE FROM {} WHERE id = $1 AND trunk_sid = $2",
            table.table()
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .bind(sid)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every trunk of every account, with what routing needs.
    pub async fn all_trunks(&self) -> Result<Vec<StoredTrunk>, StoreError> {
        let q = format!("SELECT {TRUNK_COLUMNS} FROM trunks ORDER BY created, sid");
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let trunk = trunk_row(r)?;
            let sid = trunk.trunk_sid.clone();
            out.push(StoredTrunk {
                trunk,
                numbers: self.numbers(&sid).await?,
                ips: self.ips(&sid).await?,
                destinations: self.destinations(&sid).await?,
                credentials: self.credentials(&sid).await?,
            });
        }
        Ok(out)
    }
}

/// A list that hangs off a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// Phone numbers.
    Numbers,
    /// Allowed sources.
    WhitelistedIps,
    /// Destination URIs.
    Destinations,
    /// Digest credentials.
    Credentials,
}

impl Child {
    fn table(self) -> &'static str {
        match self {
            Child::Numbers => CHILDREN[0],
            Child::WhitelistedIps => CHILDREN[1],
            Child::Destinations => CHILDREN[2],
            Child::Credentials => CHILDREN[3],
        }
    }
}

//! The store's migrations: plain SQL that SQLite and PostgreSQL both take, applied in
//! order, each in a transaction with its version recorded.

use sqlx::AnyPool;

/// The migrations, in order; a store records how many it has applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE accounts (
        sid TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        api_key TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE trunks (
        sid TEXT PRIMARY KEY,
        account_sid TEXT NOT NULL REFERENCES accounts(sid),
        name TEXT NOT NULL,
        nso_code TEXT,
        domain_name TEXT,
        external_alias TEXT,
        max_channels BIGINT,
        max_cps BIGINT,
        created BIGINT NOT NULL
    );
    CREATE TABLE numbers (
        id TEXT PRIMARY KEY,
        trunk_sid TEXT NOT NULL REFERENCES trunks(sid) ON DELETE CASCADE,
        number TEXT NOT NULL UNIQUE,
        mode TEXT NOT NULL,
        flow_id TEXT,
        created BIGINT NOT NULL
    );
    CREATE TABLE whitelisted_ips (
        id TEXT PRIMARY KEY,
        trunk_sid TEXT NOT NULL REFERENCES trunks(sid) ON DELETE CASCADE,
        ip TEXT NOT NULL,
        mask BIGINT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE destinations (
        id TEXT PRIMARY KEY,
        trunk_sid TEXT NOT NULL REFERENCES trunks(sid) ON DELETE CASCADE,
        uri TEXT NOT NULL,
        priority BIGINT NOT NULL,
        weight BIGINT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE credentials (
        id TEXT PRIMARY KEY,
        trunk_sid TEXT NOT NULL REFERENCES trunks(sid) ON DELETE CASCADE,
        user_name TEXT NOT NULL,
        friendly_name TEXT,
        ha1_md5 TEXT NOT NULL,
        ha1_sha256 TEXT NOT NULL,
        created BIGINT NOT NULL
    )",
    "CREATE TABLE flows (
        account_sid TEXT NOT NULL REFERENCES accounts(sid),
        flow_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        yaml TEXT NOT NULL,
        deleted BIGINT NOT NULL,
        created BIGINT NOT NULL,
        PRIMARY KEY (account_sid, flow_id, version)
    )",
    "CREATE TABLE carriers (
        name TEXT PRIMARY KEY,
        uri TEXT NOT NULL,
        addresses TEXT NOT NULL,
        priority BIGINT NOT NULL,
        max_channels BIGINT,
        created BIGINT NOT NULL
    )",
    "CREATE TABLE calls (
        sid TEXT PRIMARY KEY,
        account_sid TEXT,
        direction TEXT NOT NULL,
        from_number TEXT NOT NULL,
        to_number TEXT NOT NULL,
        status TEXT NOT NULL,
        created BIGINT NOT NULL,
        duration BIGINT NOT NULL,
        flow_id TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX calls_by_account ON calls (account_sid, created, sid)",
    // Toll-fraud limits: a trunk's allowed destination prefixes (comma-separated)
    // and longest call; an account's concurrent and daily call caps.
    "ALTER TABLE trunks ADD COLUMN allowed_destinations TEXT;
    ALTER TABLE trunks ADD COLUMN max_call_duration BIGINT;
    ALTER TABLE accounts ADD COLUMN max_concurrent_calls BIGINT;
    ALTER TABLE accounts ADD COLUMN max_calls_per_day BIGINT",
    // Whether a trunk's credentials may be answered with MD5 (1) or SHA-256 only.
    "ALTER TABLE trunks ADD COLUMN allow_md5 BIGINT",
    // Media anchored in rtpengine: when a trunk's legs get SRTP (`tls`, `required`)
    // and the codecs it takes (comma-separated).
    "ALTER TABLE trunks ADD COLUMN srtp TEXT;
    ALTER TABLE trunks ADD COLUMN codecs TEXT",
];

/// An arbitrary key for PostgreSQL's advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x63_61_6c_6c_66_6c_6f_77; // "callflow"

/// Applies the migrations this store has not applied yet. On PostgreSQL several
/// nodes (or tests) may start at once: an advisory lock lets one migrate at a time.
pub async fn migrate(pool: &AnyPool, postgres: bool) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = pool.acquire().await?;
    if postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let result = async {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .execute(&mut *conn)
            .await?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *conn)
            .await?;
        let applied = usize::try_from(applied.unwrap_or(0)).unwrap_or(0);
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            let mut tx = conn.begin().await?;
            for statement in migration.split(';').filter(|s| !s.trim().is_empty()) {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    if postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    result
}

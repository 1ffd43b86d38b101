//! Dataclips: untrusted SQL from an app's people, run on its Postgres add-on so that it can only
//! read.
//!
//! - **A role that cannot write.** Each cluster gets one dataclip role (made on the leader, so
//!   followers have it too): it logs in over TCP with its own password, is given SELECT on what
//!   the app's role owns (now and later, through default privileges) and nothing else, and
//!   defaults to read-only transactions.
//! - **One statement, read-only.** The SQL is parsed with the extended protocol first, which
//!   refuses more than one statement; it then runs as a cursor (`DECLARE ... FOR`), which only a
//!   query can be, in a `READ ONLY` transaction that is always rolled back.
//! - **Bounded.** A per-statement timeout (armed at each statement's start, so a query cannot
//!   lift its own), a wall-clock timeout over the whole run that cancels the query on the server,
//!   and at most [`ClipLimits::max_rows`] rows and [`ClipLimits::max_bytes`] bytes, beyond which
//!   the result is marked truncated.
//! - **On a follower** when the database has one that answers, so clips do not load the leader.
//!
//! Rows come from the simple protocol, where every value is text, so no type needs decoding.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use slipway_store::{AddonRow, AddonServerRow};
use tokio_postgres::{NoTls, SimpleQueryMessage};
use tracing::warn;

use crate::postgres;
use crate::{random_secret, AddonError, Addons};

/// Limits on every dataclip run.
#[derive(Debug, Clone)]
pub struct ClipLimits {
    /// Per statement (each `FETCH`).
    pub statement_timeout: Duration,
    /// Over the whole run.
    pub timeout: Duration,
    pub max_rows: usize,
    /// Of the values in memory, summed (a single value can still be up to Postgres's 1 GB).
    pub max_bytes: usize,
}

impl Default for ClipLimits {
    fn default() -> Self {
        ClipLimits {
            statement_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            max_rows: 100_000,
            max_bytes: 32 << 20,
        }
    }
}

/// A dataclip's result: every value as Postgres's text for it (NULL is `None`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClipResult {
    pub fields: Vec<String>,
    pub values: Vec<Vec<Option<String>>>,
    pub truncated: bool,
    /// The add-on it ran on.
    pub source: String,
    pub duration_ms: u64,
}

/// Rows fetched per round trip.
const BATCH: usize = 1000;
/// What a value costs in memory besides its text.
const CELL_BYTES: usize = 24;
/// Dataclips running at once on one database.
const CONNECTIONS: u32 = 5;

const CLIP_USER: &str = "clip_user";
const CLIP_PASSWORD: &str = "clip_password";

/// What a failed run says: Postgres's message, made plain where it would puzzle.
fn query_error(e: &tokio_postgres::Error, limits: &ClipLimits) -> AddonError {
    let Some(db) = e.as_db_error() else {
        return AddonError::Unavailable(format!("The database did not answer: {e}"));
    };
    let msg = db.message();
    let code = db.code().code();
    match code {
        // query_canceled: the statement timeout.
        "57014" => AddonError::Refused(format!(
            "The query was canceled: a statement may run for at most {} s.",
            limits.statement_timeout.as_secs_f64()
        )),
        "42601" if msg.contains("multiple commands") => {
            AddonError::Refused("A dataclip is a single query; remove the other statements.".into())
        }
        "53300" => AddonError::Unavailable(format!(
            "{CONNECTIONS} dataclips are already running on this database; try again in a moment."
        )),
        _ => {
            let mut m = format!("ERROR: {msg}");
            if let Some(hint) = db.hint() {
                m.push_str(&format!(" (HINT: {hint})"));
            }
            AddonError::Refused(m)
        }
    }
}

/// Where a dataclip connects.
struct Target {
    name: String,
    port: u16,
}

impl Addons {
    /// The cluster a dataclip on `addon` belongs to: the add-on itself, or its leader for a
    /// follower (roles can only be made there).
    async fn clip_root(&self, addon: &AddonRow) -> Result<(AddonRow, AddonServerRow), AddonError> {
        let (row, _) = self.postgres_addon(addon).await?;
        let Some(leader_id) = row.settings.get("following") else {
            return Ok((addon.clone(), row));
        };
        let leader =
            self.inner.store.addon(leader_id).await?.ok_or_else(|| {
                AddonError::Unavailable(format!("{}'s leader is gone.", addon.name))
            })?;
        let (leader_row, _) = self.postgres_addon(&leader).await?;
        Ok((leader, leader_row))
    }

    /// The dataclip role of the cluster (made once): its user name and password.
    async fn clip_login(
        &self,
        root: &AddonRow,
    ) -> Result<(AddonServerRow, String, String), AddonError> {
        let _guard = self.lock(&format!("{}-clips", root.id)).await;
        let (mut row, psql) = self.postgres_addon(root).await?;
        if let (Some(u), Some(p)) = (row.secrets.get(CLIP_USER), row.secrets.get(CLIP_PASSWORD)) {
            return Ok((row.clone(), u.clone(), p.clone()));
        }
        let secret = |k: &str| row.secrets.get(k).cloned().unwrap_or_default();
        let (app_user, holder, db) = (secret("user"), secret("holder"), secret("database"));
        let (clip, password) = (postgres::ident('c'), random_secret());
        psql.exec("postgres", &role_sql(&clip, &password, &db))
            .await?;
        if let Err(e) = psql.exec(&db, &grants_sql(&clip, &app_user, &holder)).await {
            // No half-made role left behind to log in with.
            let _ = psql.exec(&db, &format!("DROP OWNED BY {clip};")).await;
            let _ = psql
                .exec("postgres", &format!("DROP ROLE IF EXISTS {clip};"))
                .await;
            return Err(e);
        }
        row.secrets.insert(CLIP_USER.into(), clip.clone());
        row.secrets.insert(CLIP_PASSWORD.into(), password.clone());
        self.inner
            .store
            .set_addon_server(&root.id, &row.secrets, &row.settings)
            .await?;
        Ok((row, clip, password))
    }

    /// Where a clip on `root` runs: its followers first, then itself.
    async fn clip_targets(&self, root: &AddonRow, row: &AddonServerRow) -> Vec<Target> {
        let mut out = Vec::new();
        for name in self.followers_of(&root.id).await {
            let Ok(Some(f)) = self.inner.store.addon(&name).await else {
                continue;
            };
            if let Ok(Some(frow)) = self.inner.store.addon_server(&f.id).await {
                out.push(Target {
                    name: f.name,
                    port: frow.port,
                });
            }
        }
        out.push(Target {
            name: root.name.clone(),
            port: row.port,
        });
        out
    }

    async fn clip_connect(
        &self,
        root: &AddonRow,
    ) -> Result<(tokio_postgres::Client, String), AddonError> {
        let (row, user, password) = self.clip_login(root).await?;
        let db = row.secrets.get("database").cloned().unwrap_or_default();
        let host = self
            .inner
            .cfg
            .listen
            .first()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        let mut last = None;
        for target in self.clip_targets(root, &row).await {
            let mut cfg = tokio_postgres::Config::new();
            cfg.host(&host)
                .port(target.port)
                .user(&user)
                .password(&password)
                .dbname(&db)
                .application_name("slipway dataclip")
                .connect_timeout(Duration::from_secs(5));
            match cfg.connect(NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    return Ok((client, target.name));
                }
                Err(e) => {
                    if e.as_db_error().map(|d| d.code().code()) == Some("53300") {
                        return Err(query_error(&e, &self.inner.cfg.dataclips));
                    }
                    warn!(database = %target.name, error = %e, "A dataclip could not connect.");
                    last = Some(e);
                }
            }
        }
        Err(AddonError::Unavailable(format!(
            "{} cannot be reached now{}; try again in a moment.",
            root.name,
            last.map(|e| format!(" ({e})")).unwrap_or_default()
        )))
    }

    /// Checks that `sql` is one query that the dataclip role may plan on the database, without
    /// running it (a cursor is declared, never fetched from, and rolled back); returns its
    /// column names.
    pub async fn check_clip(&self, addon: &AddonRow, sql: &str) -> Result<Vec<String>, AddonError> {
        let limits = self.inner.cfg.dataclips.clone();
        let (root, _) = self.clip_root(addon).await?;
        let (client, _) = self.clip_connect(&root).await?;
        let cancel = client.cancel_token();
        match tokio::time::timeout(limits.timeout, declare(&client, sql, &limits)).await {
            Ok(Ok(fields)) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Ok(fields)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let _ = cancel.cancel_query(NoTls).await;
                Err(AddonError::Refused(
                    "The query took too long to plan.".into(),
                ))
            }
        }
    }

    /// Runs a dataclip's SQL on `addon` (on a follower of it when one answers).
    pub async fn run_clip(&self, addon: &AddonRow, sql: &str) -> Result<ClipResult, AddonError> {
        let limits = self.inner.cfg.dataclips.clone();
        let (root, _) = self.clip_root(addon).await?;
        let started = Instant::now();
        let (client, source) = self.clip_connect(&root).await?;
        let cancel = client.cancel_token();
        let run = run_on(&client, sql, &limits);
        let outcome = tokio::time::timeout(limits.timeout, run).await;
        let result = match outcome {
            Ok(r) => r,
            Err(_) => {
                // The query goes on on the server until it is told to stop.
                if let Err(e) = cancel.cancel_query(NoTls).await {
                    warn!(error = %e, "Could not cancel a dataclip's query.");
                }
                Err(AddonError::Refused(format!(
                    "The query was canceled: a dataclip may run for at most {} s.",
                    limits.timeout.as_secs_f64()
                )))
            }
        };
        let (fields, values, truncated) = result?;
        Ok(ClipResult {
            fields,
            values,
            truncated,
            source,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

type Rows = (Vec<String>, Vec<Vec<Option<String>>>, bool);

/// Opens the read-only transaction and declares the cursor for `sql`; returns its column names.
async fn declare(
    client: &tokio_postgres::Client,
    sql: &str,
    limits: &ClipLimits,
) -> Result<Vec<String>, AddonError> {
    let err = |e: tokio_postgres::Error| query_error(&e, limits);
    // The extended protocol takes one statement only, and names the columns.
    let stmt = client.prepare(sql).await.map_err(err)?;
    let fields: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    client
        .batch_execute(&format!(
            "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = {};",
            limits.statement_timeout.as_millis().max(1)
        ))
        .await
        .map_err(err)?;
    // The newline ends a trailing `--` comment. Only a query can be a cursor.
    if let Err(e) = client
        .batch_execute(&format!(
            "DECLARE slipway_clip NO SCROLL CURSOR FOR {sql}\n"
        ))
        .await
    {
        let _ = client.batch_execute("ROLLBACK").await;
        if e.as_db_error().map(|d| d.code().code()) == Some("42601") {
            return Err(AddonError::Refused(
                "A dataclip is a query: SELECT, WITH ... SELECT, VALUES or TABLE. It cannot \
                 change data."
                    .into(),
            ));
        }
        return Err(err(e));
    }
    Ok(fields)
}

async fn run_on(
    client: &tokio_postgres::Client,
    sql: &str,
    limits: &ClipLimits,
) -> Result<Rows, AddonError> {
    let err = |e: tokio_postgres::Error| query_error(&e, limits);
    let fields = declare(client, sql, limits).await?;
    let mut values: Vec<Vec<Option<String>>> = Vec::new();
    let mut bytes = 0usize;
    let mut truncated = false;
    // Rows are taken one at a time from the stream, so the limits hold within a batch too.
    'fetch: loop {
        let want = BATCH.min(limits.max_rows + 1 - values.len());
        let stream = match client
            .simple_query_raw(&format!("FETCH {want} FROM slipway_clip"))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(err(e));
            }
        };
        futures_util::pin_mut!(stream);
        let mut got = 0;
        while let Some(m) = stream.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(err(e));
                }
            };
            let SimpleQueryMessage::Row(r) = m else {
                continue;
            };
            got += 1;
            if values.len() == limits.max_rows {
                truncated = true;
                break 'fetch;
            }
            let row: Vec<Option<String>> =
                (0..r.len()).map(|i| r.get(i).map(str::to_string)).collect();
            bytes += row
                .iter()
                .map(|v| CELL_BYTES + v.as_ref().map_or(0, String::len))
                .sum::<usize>();
            values.push(row);
            if bytes > limits.max_bytes {
                truncated = true;
                break 'fetch;
            }
        }
        if got < want {
            break;
        }
    }
    // Cut short, the rest of a batch may still be on its way: the connection is dropped
    // instead, which ends the transaction on the server.
    if !truncated {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    Ok((fields, values, truncated))
}

/// The dataclip role: logs in, reads, and by default cannot even start a writing transaction.
fn role_sql(clip: &str, password: &str, db: &str) -> String {
    // A failing statement is not logged with its text: it holds the password, and the
    // cluster's log reaches the app's log.
    format!(
        "SET log_min_error_statement = panic;\n\
         CREATE ROLE {clip} LOGIN PASSWORD '{password}' CONNECTION LIMIT {CONNECTIONS};\n\
         ALTER ROLE {clip} SET default_transaction_read_only = on;\n\
         ALTER ROLE {clip} SET idle_in_transaction_session_timeout = '60s';\n\
         ALTER ROLE {clip} SET work_mem = '16MB';\n\
         ALTER ROLE {clip} SET temp_file_limit = '256MB';\n\
         GRANT CONNECT ON DATABASE {db} TO {clip};\n"
    )
}

/// SELECT on what the app's role owns (or its holder, while over the row limit), now and
/// later; never Slipway's own schema.
fn grants_sql(clip: &str, app_user: &str, holder: &str) -> String {
    format!(
        "DO $$ DECLARE s record; BEGIN\n\
           FOR s IN SELECT nspname FROM pg_namespace\n\
                    WHERE nspowner IN ('{app_user}'::regrole, '{holder}'::regrole)\n\
                       OR nspname = 'public' LOOP\n\
             EXECUTE format('GRANT USAGE ON SCHEMA %I TO {clip}', s.nspname);\n\
             EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO {clip}', s.nspname);\n\
             EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO {clip}', s.nspname);\n\
           END LOOP;\n\
         END $$;\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {app_user} GRANT SELECT ON TABLES TO {clip};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {app_user} GRANT SELECT ON SEQUENCES TO {clip};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {app_user} GRANT USAGE ON SCHEMAS TO {clip};\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_reads_only_what_the_app_owns() {
        let role = role_sql("cabc", "pw", "dxyz");
        assert!(role.contains("default_transaction_read_only = on"));
        assert!(role.contains("CONNECTION LIMIT 5"));
        assert!(
            !role.contains("pg_read_all_data"),
            "that would read pg_authid"
        );
        let grants = grants_sql("cabc", "uapp", "hold");
        assert!(grants.contains("GRANT SELECT ON ALL TABLES"));
        assert!(!grants.contains("INSERT") && !grants.contains("UPDATE"));
        assert!(!grants.contains("slipway_admin"));
    }
}

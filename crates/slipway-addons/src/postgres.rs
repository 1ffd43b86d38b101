//! The Postgres provider's pieces: the cluster's settings and access rules, the SQL Slipway runs
//! as the cluster's superuser (through the real `psql`, over the cluster's private socket), the
//! queries behind `pg:ps`, `pg:locks` and `pg:outliers`, and Heroku's row limit.
//!
//! Each add-on is a cluster of its own (`initdb` under the add-on's dir, run as `postgres`)
//! holding one database and one login role for apps. The superuser logs in only over the unix
//! socket, whose directory only `postgres` (and root) can enter; over TCP it is refused, and
//! apps log in with a password (SCRAM).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::AddonError;

/// What goes into `slipway.conf`, included from the cluster's `postgresql.conf`.
pub struct Conf<'a> {
    pub listen: &'a [Ipv4Addr],
    pub port: u16,
    pub dir: &'a Path,
    pub connections: u32,
    pub memory_bytes: u64,
    pub storage_bytes: Option<u64>,
    /// Continuous protection: WAL archived into `<dir>/wal-archive`.
    pub archive: bool,
    /// Recovery to a point in time from another cluster's archive (a rollback being made):
    /// (that archive, the target time).
    pub recover: Option<(&'a Path, String)>,
}

impl Conf<'_> {
    pub fn render(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        let dir = self.dir.display();
        // A quarter of the memory cap for shared buffers, as is usual for a dedicated server.
        let shared_kb = (self.memory_bytes / 4 / 1024).max(16 * 1024);
        let temp = match self.storage_bytes {
            Some(b) => format!("temp_file_limit = {}kB\n", b / 10 / 1024),
            None => String::new(),
        };
        format!(
            "# Written by Slipway; changes are overwritten.\n\
             listen_addresses = '{listen}'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}/run'\n\
             unix_socket_permissions = 0700\n\
             max_connections = {max}\n\
             superuser_reserved_connections = 3\n\
             shared_buffers = {shared_kb}kB\n\
             work_mem = 4MB\n\
             {temp}\
             password_encryption = scram-sha-256\n\
             shared_preload_libraries = 'pg_stat_statements'\n\
             pg_stat_statements.track = top\n\
             track_io_timing = on\n\
             logging_collector = on\n\
             log_destination = 'stderr'\n\
             log_directory = '{dir}/log'\n\
             log_filename = 'postgresql-%a.log'\n\
             log_truncate_on_rotation = on\n\
             log_rotation_age = 1d\n\
             log_rotation_size = 0\n\
             log_line_prefix = '%p %l %e '\n\
             log_min_duration_statement = 2000\n\
             log_lock_waits = on\n\
             log_timezone = 'UTC'\n\
             timezone = 'UTC'\n{archive}{recover}",
            archive = if self.archive {
                format!(
                    "archive_mode = on\n\
                     archive_command = 'test ! -f {dir}/wal-archive/%f && cp %p {dir}/wal-archive/%f'\n\
                     archive_timeout = 60\n"
                )
            } else {
                String::new()
            },
            recover = match &self.recover {
                Some((archive, target)) => format!(
                    "restore_command = 'cp {}/%f %p'\n\
                     recovery_target_time = '{target}'\n\
                     recovery_target_inclusive = false\n\
                     recovery_target_timeline = 'current'\n\
                     recovery_target_action = 'promote'\n",
                    archive.display()
                ),
                None => String::new(),
            },
            listen = listen.join(","),
            port = self.port,
            max = self.connections + 5,
        )
    }
}

/// `pg_hba.conf`: the superuser over the socket only; everyone else with a password, from this
/// host (any of its addresses: the host reaches the gateway address from its own) and the dyno
/// network.
pub fn hba(subnet: Option<&str>) -> String {
    let mut out = String::from(
        "# Written by Slipway; changes are overwritten.\n\
         local all postgres trust\n\
         local replication postgres trust\n\
         local all all reject\n\
         host all postgres 0.0.0.0/0 reject\n\
         host all all samehost scram-sha-256\n\
         host replication all samehost scram-sha-256\n",
    );
    if let Some(net) = subnet {
        out.push_str(&format!("host all all {net} scram-sha-256\n"));
    }
    out
}

/// A name for a role or database: a letter and 14 random lower-case letters and digits.
pub fn ident(prefix: char) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes: [u8; 14] = rand::random();
    let mut s = String::from(prefix);
    s.extend(
        bytes
            .iter()
            .map(|b| CHARS[*b as usize % CHARS.len()] as char),
    );
    s
}

/// The cluster's superuser session: the real `psql`, over the private socket.
pub struct Psql {
    pub bin: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
}

/// Rows of a query's result (as text; NULL is `None`), with its column names.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Psql {
    fn command(&self, db: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .env_clear()
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGAPPNAME", "slipway")
            // Only the catalog's functions and operators: objects the app made in `public`
            // must never resolve in the superuser's statements.
            .env("PGOPTIONS", "-c search_path=pg_catalog")
            .env("LANG", "C.UTF-8")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, db: &str, args: &[&str], input: &str) -> Result<String, AddonError> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.command(db);
        cmd.args(args);
        let mut child = cmd.spawn().map_err(|e| {
            AddonError::Unavailable(format!("cannot run {}: {e}", self.bin.display()))
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .map_err(|_| AddonError::Unavailable("Postgres did not answer within 120 s".into()))?
            .map_err(|e| AddonError::Unavailable(e.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim().trim_start_matches("psql:<stdin>:").trim();
            return Err(AddonError::Unavailable(format!("Postgres: {err}")));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs statements one by one (each in its own transaction unless it says otherwise).
    pub async fn exec(&self, db: &str, sql: &str) -> Result<(), AddonError> {
        self.run(db, &["-f", "-"], sql).await.map(|_| ())
    }

    /// Runs one query and returns its rows.
    pub async fn query(&self, db: &str, sql: &str) -> Result<Table, AddonError> {
        // NULL as a marker no text value has, to tell it from an empty string.
        let out = self
            .run(db, &["--csv", "-P", "null=\u{1}NULL", "-f", "-"], sql)
            .await?;
        let mut records = parse_csv(&out).into_iter();
        let columns = records.next().unwrap_or_default();
        let rows = records
            .map(|r| {
                r.into_iter()
                    .map(|v| (v != "\u{1}NULL").then_some(v))
                    .collect()
            })
            .collect();
        Ok(Table { columns, rows })
    }

    /// One value of a one-row query.
    pub async fn value(&self, db: &str, sql: &str) -> Result<Option<String>, AddonError> {
        Ok(self
            .query(db, sql)
            .await?
            .rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }
}

/// RFC 4180 CSV as `psql --csv` writes it.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            c => field.push(c),
        }
    }
    if any {
        record.push(field);
        records.push(record);
    }
    records
}

/// The SQL that makes the app's role and database, and Slipway's private schema in it.
pub fn setup_sql(
    user: &str,
    holder: &str,
    db: &str,
    password: &str,
    connections: u32,
) -> (String, String) {
    let in_postgres = format!(
        "CREATE ROLE {user} LOGIN PASSWORD '{password}' CONNECTION LIMIT {connections};\n\
         CREATE ROLE {holder} NOLOGIN;\n\
         CREATE DATABASE {db} OWNER {user};\n\
         REVOKE ALL ON DATABASE {db} FROM PUBLIC;\n\
         REVOKE ALL ON DATABASE postgres FROM PUBLIC;\n\
         REVOKE ALL ON DATABASE template1 FROM PUBLIC;\n\
         GRANT CONNECT, TEMP ON DATABASE {db} TO {user};\n"
    );
    // pg_stat_statements lives outside `public`, where the app's grants never reach it.
    let in_db = "CREATE SCHEMA slipway_admin;\n\
                 CREATE EXTENSION pg_stat_statements SCHEMA slipway_admin;\n\
                 REVOKE ALL ON SCHEMA slipway_admin FROM PUBLIC;\n"
        .to_string();
    (in_postgres, in_db)
}

/// Heroku's row limit, enforced: the app's role keeps SELECT, UPDATE and DELETE but loses INSERT
/// (and CREATE). Its objects move to a holder role that owns them meanwhile; privileges are
/// checked per statement, so open sessions are affected at once. Run in the app's database.
pub fn restrict_sql(user: &str, holder: &str, db: &str) -> String {
    format!(
        "BEGIN;\n\
         REASSIGN OWNED BY {user} TO {holder};\n\
         GRANT CONNECT, TEMP ON DATABASE {db} TO {user};\n\
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;\n\
         DO $$ DECLARE s record; f record; BEGIN\n\
           FOR s IN SELECT nspname FROM pg_namespace\n\
                    WHERE nspowner = '{holder}'::regrole OR nspname = 'public' LOOP\n\
             EXECUTE format('GRANT USAGE ON SCHEMA %I TO {user}', s.nspname);\n\
             EXECUTE format('GRANT SELECT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA %I TO {user}', s.nspname);\n\
             EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO {user}', s.nspname);\n\
           END LOOP;\n\
           -- A SECURITY DEFINER function owned by the holder would insert with its rights.\n\
           FOR f IN SELECT oid::regprocedure AS p FROM pg_proc WHERE proowner = '{holder}'::regrole LOOP\n\
             EXECUTE format('ALTER ROUTINE %s OWNER TO {user}', f.p);\n\
           END LOOP;\n\
         END $$;\n\
         COMMIT;\n"
    )
}

/// Gives everything back to the app's role (INSERT and CREATE return).
pub fn restore_sql(user: &str, holder: &str) -> String {
    format!(
        "BEGIN;\n\
         REASSIGN OWNED BY {holder} TO {user};\n\
         COMMIT;\n"
    )
}

/// `pg:ps`: the app's sessions (without idle ones unless `verbose`), never other databases'.
pub fn activity_sql(db: &str, roles: &[&str], verbose: bool) -> String {
    format!(
        "SELECT pid, state, application_name AS source, usename AS username, \
         age(now(), xact_start)::text AS running_for, \
         to_char(xact_start, 'YYYY-MM-DD HH24:MI:SS') AS transaction_start, \
         (wait_event IS NOT NULL AND state = 'active')::text AS waiting, query \
         FROM pg_stat_activity WHERE datname = '{db}' AND usename IN ({roles}) \
         AND pid <> pg_backend_pid() {idle} ORDER BY query_start DESC NULLS LAST",
        roles = in_list(roles),
        idle = if verbose { "" } else { "AND state <> 'idle'" },
    )
}

/// `pg:locks`: exclusive locks held by the app's sessions.
pub fn locks_sql(db: &str, roles: &[&str]) -> String {
    format!(
        "SELECT a.pid, c.relname, l.transactionid::text AS transactionid, l.granted::text AS granted, \
         a.query AS query_snippet, age(now(), a.query_start)::text AS age \
         FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
         LEFT JOIN pg_class c ON l.relation = c.oid \
         WHERE l.mode = 'ExclusiveLock' AND a.datname = '{db}' AND a.usename IN ({roles}) \
         AND a.pid <> pg_backend_pid() ORDER BY a.query_start",
        roles = in_list(roles),
    )
}

/// `pg:outliers`: the app's statements by total time, from `pg_stat_statements`.
pub fn outliers_sql(db: &str, roles: &[&str], limit: u32) -> String {
    format!(
        "SELECT (interval '1 millisecond' * total_exec_time)::text AS total_exec_time, \
         to_char(total_exec_time / NULLIF(sum(total_exec_time) OVER (), 0) * 100, 'FM990.0') || '%' \
         AS prop_exec_time, to_char(calls, 'FM999G999G999G990') AS ncalls, \
         (interval '1 millisecond' * (blk_read_time + blk_write_time))::text AS sync_io_time, query \
         FROM slipway_admin.pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{db}') \
         AND userid IN (SELECT oid FROM pg_roles WHERE rolname IN ({roles})) \
         ORDER BY total_exec_time DESC LIMIT {limit}",
        roles = in_list(roles),
    )
}

fn in_list(roles: &[&str]) -> String {
    roles
        .iter()
        .map(|r| format!("'{}'", r.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A line of the cluster's log (`log_line_prefix = '%p %l %e '`) as Heroku shows it:
/// `(pid, "[DATABASE] [12-1] sql_error_code = 00000 LOG:  ...")`.
pub fn log_line(attachment: &str, line: &str) -> Option<(String, String)> {
    let mut parts = line.splitn(4, ' ');
    let pid = parts.next()?;
    let num = parts.next()?;
    let code = parts.next()?;
    let rest = parts.next()?;
    if !pid.chars().all(|c| c.is_ascii_digit())
        || !num.chars().all(|c| c.is_ascii_digit())
        || code.len() != 5
    {
        return None;
    }
    Some((
        pid.to_string(),
        format!("[{attachment}] [{num}-1] sql_error_code = {code} {rest}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_as_psql_writes_it() {
        let rows = parse_csv("pid,query\n12,\"SELECT 'a, b', \"\"x\"\"\nFROM t\"\n13,\n");
        assert_eq!(rows[0], ["pid", "query"]);
        assert_eq!(rows[1], ["12", "SELECT 'a, b', \"x\"\nFROM t"]);
        assert_eq!(rows[2], ["13", ""]);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn superuser_only_over_the_socket() {
        let h = hba(Some("10.213.0.0/16"));
        let lines: Vec<&str> = h.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines[0], "local all postgres trust");
        assert_eq!(lines[1], "local replication postgres trust");
        assert_eq!(lines[2], "local all all reject");
        assert_eq!(lines[3], "host all postgres 0.0.0.0/0 reject");
        assert!(lines.contains(&"host all all 10.213.0.0/16 scram-sha-256"));
        assert!(!h.contains("trust\nhost"));
    }

    #[test]
    fn conf_follows_the_plan() {
        let c = Conf {
            listen: &["127.0.0.1".parse().unwrap(), "10.213.0.1".parse().unwrap()],
            port: 15401,
            dir: Path::new("/srv/p"),
            connections: 20,
            memory_bytes: 256 * 1024 * 1024,
            storage_bytes: Some(1024 * 1024 * 1024),
            archive: true,
            recover: None,
        }
        .render();
        assert!(c.contains(
            "archive_command = 'test ! -f /srv/p/wal-archive/%f && cp %p /srv/p/wal-archive/%f'\n"
        ));
        assert!(c.contains("listen_addresses = '127.0.0.1,10.213.0.1'\n"));
        assert!(c.contains("max_connections = 25\n"));
        assert!(c.contains("shared_buffers = 65536kB\n"));
        assert!(c.contains("unix_socket_directories = '/srv/p/run'\n"));
        assert!(c.contains("shared_preload_libraries = 'pg_stat_statements'\n"));
    }

    #[test]
    fn log_lines_read_like_herokus() {
        assert_eq!(
            log_line(
                "DATABASE",
                "4242 7 42P01 ERROR:  relation \"nope\" does not exist"
            ),
            Some((
                "4242".to_string(),
                "[DATABASE] [7-1] sql_error_code = 42P01 ERROR:  relation \"nope\" does not exist"
                    .to_string()
            ))
        );
        assert_eq!(log_line("DATABASE", "\tcontinued statement text"), None);
    }

    #[test]
    fn idents_are_safe_sql_names() {
        let u = ident('u');
        assert_eq!(u.len(), 15);
        assert!(
            u.starts_with('u')
                && u.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}

/// How a `pg:diagnose` check is graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    Red,
    Yellow,
    Green,
    Skipped,
}

/// Thresholds of `pg:diagnose` that an operator may change.
#[derive(Debug, Clone, Copy)]
pub struct DiagnoseLimits {
    /// A query running longer (and a transaction idle longer) is reported.
    pub long_query: std::time::Duration,
    /// A transaction open longer is reported.
    pub long_transaction: std::time::Duration,
}

impl Default for DiagnoseLimits {
    fn default() -> Self {
        DiagnoseLimits {
            long_query: std::time::Duration::from_secs(60),
            long_transaction: std::time::Duration::from_secs(3600),
        }
    }
}

/// The SQL of each `pg:diagnose` check that is a query, in Heroku's order: (name, SQL). Each
/// looks only at the add-on's database and, where sessions are concerned, its app's roles.
pub fn diagnose_checks(
    db: &str,
    roles: &[&str],
    limits: &DiagnoseLimits,
) -> Vec<(&'static str, String)> {
    let roles = in_list(roles);
    let long = format!("{} seconds", limits.long_query.as_secs().max(1));
    let long_xact = format!("{} seconds", limits.long_transaction.as_secs().max(1));
    let user_schemas =
        "n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT IN ('information_schema', 'slipway_admin')";
    vec![
        (
            "Connection Count",
            format!("SELECT count(*) AS count FROM pg_stat_activity WHERE usename IN ({roles})"),
        ),
        (
            "Long Queries",
            format!(
                "SELECT pid, (now() - query_start)::text AS duration, query FROM pg_stat_activity \
                 WHERE datname = '{db}' AND usename IN ({roles}) AND state = 'active' \
                 AND now() - query_start > interval '{long}' ORDER BY query_start"
            ),
        ),
        (
            "Long Transactions",
            format!(
                "SELECT pid, (now() - xact_start)::text AS duration, state, query FROM pg_stat_activity \
                 WHERE datname = '{db}' AND usename IN ({roles}) AND xact_start IS NOT NULL \
                 AND now() - xact_start > interval '{long_xact}' ORDER BY xact_start"
            ),
        ),
        (
            "Idle in Transaction",
            format!(
                "SELECT pid, (now() - state_change)::text AS duration, query FROM pg_stat_activity \
                 WHERE datname = '{db}' AND usename IN ({roles}) AND state LIKE 'idle in transaction%' \
                 AND now() - state_change > interval '{long}' ORDER BY state_change"
            ),
        ),
        (
            "Indexes",
            "SELECT s.schemaname, s.relname AS table, s.indexrelname AS index, \
             pg_size_pretty(pg_relation_size(s.indexrelid)) AS index_size, s.idx_scan AS index_scans, \
             'Never Used Indexes' AS reason FROM pg_stat_user_indexes s \
             JOIN pg_index i ON i.indexrelid = s.indexrelid \
             WHERE NOT i.indisunique AND NOT i.indisprimary AND s.idx_scan = 0 \
             AND pg_relation_size(s.indexrelid) > 64 * 1024 * 1024 ORDER BY pg_relation_size(s.indexrelid) DESC"
                .to_string(),
        ),
        (
            "Bloat",
            "SELECT schemaname, relname AS table, \
             round((n_live_tup + n_dead_tup)::numeric / greatest(n_live_tup, 1), 1) AS bloat, \
             pg_size_pretty((pg_relation_size(relid) * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1))::bigint) AS waste \
             FROM pg_stat_user_tables \
             WHERE (n_live_tup + n_dead_tup)::numeric / greatest(n_live_tup, 1) > 10 \
             AND pg_relation_size(relid) * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1) > 64 * 1024 * 1024"
                .to_string(),
        ),
        ("Hit Rate", cache_hit_sql().to_string()),
        (
            "Blocking Queries",
            format!(
                "SELECT bl.pid AS blocked_pid, ka.pid AS blocking_pid, \
                 (now() - bl.query_start)::text AS blocked_duration, bl.query AS blocked_query, \
                 ka.query AS blocking_query FROM pg_stat_activity bl \
                 JOIN LATERAL unnest(pg_blocking_pids(bl.pid)) AS b(pid) ON true \
                 JOIN pg_stat_activity ka ON ka.pid = b.pid WHERE bl.datname = '{db}' ORDER BY bl.query_start"
            ),
        ),
        (
            "Sequences",
            "SELECT schemaname, sequencename, last_value, max_value, \
             round(100.0 * last_value / max_value, 2) AS percent_used FROM pg_sequences \
             WHERE last_value IS NOT NULL AND max_value > 0 \
             AND schemaname NOT IN ('pg_catalog', 'information_schema', 'slipway_admin') \
             AND 100.0 * last_value / max_value >= 75 ORDER BY 5 DESC"
                .to_string(),
        ),
        (
            "Unlogged Tables",
            format!(
                "SELECT n.nspname AS schema, c.relname AS table FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p') AND {user_schemas}"
            ),
        ),
        (
            "Table Transaction ID Wraparound",
            "SELECT n.nspname AS schema, c.relname AS table, age(c.relfrozenxid) AS xid_age, \
             round(100.0 * age(c.relfrozenxid) / 2147483648, 2) AS percent FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm', 't') AND age(c.relfrozenxid) > 536870912 \
             ORDER BY 3 DESC LIMIT 20"
                .to_string(),
        ),
        (
            "Database Transaction ID Wraparound",
            format!(
                "SELECT datname, age(datfrozenxid) AS xid_age, mxid_age(datminmxid) AS mxid_age, \
                 round(100.0 * greatest(age(datfrozenxid), mxid_age(datminmxid)) / 2147483648, 2) AS percent \
                 FROM pg_database WHERE datname = '{db}' \
                 AND greatest(age(datfrozenxid), mxid_age(datminmxid)) > 536870912"
            ),
        ),
        (
            "Schema Count",
            format!("SELECT count(*) AS count FROM pg_namespace n WHERE {user_schemas}"),
        ),
    ]
}

/// Index and table cache hit rates (`pg:cache-hit`).
pub fn cache_hit_sql() -> &'static str {
    "SELECT 'index hit rate' AS name, \
     round(sum(idx_blks_hit)::numeric / nullif(sum(idx_blks_hit + idx_blks_read), 0), 4) AS ratio, \
     coalesce(sum(idx_blks_hit + idx_blks_read), 0) AS blocks FROM pg_statio_user_indexes \
     UNION ALL SELECT 'table hit rate', \
     round(sum(heap_blks_hit)::numeric / nullif(sum(heap_blks_hit + heap_blks_read), 0), 4), \
     coalesce(sum(heap_blks_hit + heap_blks_read), 0) FROM pg_statio_user_tables"
}

/// How often each table is read through an index (`pg:index-usage`).
pub fn index_usage_sql() -> &'static str {
    "SELECT relname AS table, CASE coalesce(idx_scan, 0) WHEN 0 THEN 'Insufficient data' \
     ELSE (100 * idx_scan / (seq_scan + idx_scan))::text END AS percent_of_times_index_used, \
     n_live_tup AS rows_in_table FROM pg_stat_user_tables ORDER BY n_live_tup DESC"
}

/// Dead rows per table (`pg:bloat`).
pub fn bloat_sql() -> &'static str {
    "SELECT 'table' AS type, schemaname, relname AS object_name, \
     round((n_live_tup + n_dead_tup)::numeric / greatest(n_live_tup, 1), 1) AS bloat, \
     pg_size_pretty((pg_relation_size(relid) * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1))::bigint) AS waste \
     FROM pg_stat_user_tables ORDER BY pg_relation_size(relid) * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1) DESC"
}

/// Grades a check from its rows (`limit`: the plan's connections; `load`: per CPU).
pub fn grade(name: &str, t: &Table, connection_limit: u32) -> (Grade, Option<String>) {
    let num = |row: usize, col: &str| -> f64 {
        let i = t.columns.iter().position(|c| c == col);
        i.and_then(|i| t.rows.get(row)?.get(i)?.as_deref()?.parse().ok())
            .unwrap_or(0.0)
    };
    let any = !t.rows.is_empty();
    match name {
        "Connection Count" => {
            let n = num(0, "count");
            let limit = f64::from(connection_limit.max(1));
            let msg = Some(format!("{n} of {connection_limit} connections in use"));
            if n >= 0.9 * limit {
                (Grade::Red, msg)
            } else if n >= 0.75 * limit {
                (Grade::Yellow, msg)
            } else {
                (Grade::Green, None)
            }
        }
        "Hit Rate" => {
            // Too little traffic says nothing either way.
            let low =
                (0..t.rows.len()).any(|r| num(r, "blocks") >= 1000.0 && num(r, "ratio") < 0.99);
            if low {
                (
                    Grade::Red,
                    Some("Less than 99% of reads are served from memory.".into()),
                )
            } else {
                (Grade::Green, None)
            }
        }
        "Sequences" => {
            let top = (0..t.rows.len())
                .map(|r| num(r, "percent_used"))
                .fold(0.0, f64::max);
            if top >= 90.0 {
                (
                    Grade::Red,
                    Some("A sequence is close to its type's limit.".into()),
                )
            } else if top >= 75.0 {
                (Grade::Yellow, None)
            } else {
                (Grade::Green, None)
            }
        }
        "Table Transaction ID Wraparound" | "Database Transaction ID Wraparound" => {
            let top = (0..t.rows.len())
                .map(|r| num(r, "percent"))
                .fold(0.0, f64::max);
            if top > 50.0 {
                (
                    Grade::Red,
                    Some("Run VACUUM FREEZE before transaction IDs wrap around.".into()),
                )
            } else if top > 25.0 {
                (Grade::Yellow, None)
            } else {
                (Grade::Green, None)
            }
        }
        "Schema Count" => {
            let n = num(0, "count");
            if n > 50.0 {
                (Grade::Red, Some(format!("{n} schemas")))
            } else if n > 20.0 {
                (Grade::Yellow, Some(format!("{n} schemas")))
            } else {
                (Grade::Green, None)
            }
        }
        "Unlogged Tables" if any => (
            Grade::Yellow,
            Some("Unlogged tables are emptied after a crash and are not on followers.".into()),
        ),
        _ if any => (Grade::Red, None),
        _ => (Grade::Green, None),
    }
}

//! `pg:diagnose`, `pg:bloat`, `pg:index-usage`, `pg:cache-hit`, `pg:explain`: a Postgres add-on
//! found by its attachment name as in `pg`, then the server's `/addons/{id}/postgres` diagnostics
//! endpoints. A diagnose report is stored by the server and can be shown again by its id
//! (`GET /pg-diagnose/{id}`) for a month.

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::pg::{pg_path, resolve, show_rows, QueryRows};
use super::Ctx;
use crate::api::{decode, seg};
use crate::args::{PgDatabase, PgDiagnose, PgExplain};

/// What `POST /addons/{id}/postgres/diagnose` and `GET /pg-diagnose/{id}` answer.
#[derive(Debug, Deserialize)]
struct Report {
    id: String,
    created_at: DateTime<Utc>,
    app: String,
    database: String,
    #[serde(default)]
    checks: Vec<Check>,
}

/// One graded check of a report.
#[derive(Debug, Deserialize)]
struct Check {
    name: String,
    status: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    results: Option<QueryRows>,
}

/// The order in which Heroku prints the grades; any other status comes last.
const GRADES: [&str; 4] = ["red", "yellow", "green", "skipped"];

/// Whether the argument is a report id (a UUID) rather than a database.
fn is_report_id(arg: &str) -> bool {
    let groups: Vec<&str> = arg.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A report as Heroku's CLI prints it: red checks first with their rows, then yellow ones, then
/// green and skipped ones on one line each.
fn render_report(report: &Report) -> String {
    let mut out = format!(
        "Report {} for {}::{}\navailable for one month after creation on {}\n\n",
        report.id,
        report.app,
        report.database,
        report.created_at.format("%Y-%m-%d %H:%M:%S %z")
    );
    let rank = |c: &Check| {
        GRADES
            .iter()
            .position(|g| *g == c.status)
            .unwrap_or(GRADES.len())
    };
    let mut checks: Vec<&Check> = report.checks.iter().collect();
    checks.sort_by_key(|c| rank(c));
    for check in checks {
        let heading = format!("{}: {}", check.status.to_uppercase(), check.name);
        let message = check.message.as_deref().filter(|m| !m.is_empty());
        match check.status.as_str() {
            "red" | "yellow" => {
                out.push_str(&heading);
                out.push('\n');
                if let Some(m) = message {
                    out.push_str(m);
                    out.push('\n');
                }
                match &check.results {
                    Some(rows) if !rows.rows.is_empty() => out.push_str(&rows.render(false)),
                    _ => out.push('\n'),
                }
            }
            "green" => {
                out.push_str(&heading);
                out.push('\n');
            }
            _ => {
                out.push_str(&heading);
                if let Some(m) = message {
                    // One line, even for a multi-line error.
                    let m = m.split_whitespace().collect::<Vec<_>>().join(" ");
                    out.push_str(&format!(" ({m})"));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// `pg:diagnose [DATABASE|REPORT_ID] [--json]`: runs the checks on a database, or shows an
/// earlier report when given its id.
pub async fn diagnose(ctx: &mut Ctx<'_>, a: PgDiagnose) -> Result<()> {
    let value = match a.target.as_deref().filter(|t| is_report_id(t)) {
        Some(id) => {
            let api = ctx.api()?;
            api.get(&format!("/pg-diagnose/{}", seg(&id.to_ascii_lowercase())))
                .await?
        }
        None => {
            let app = ctx.app(&a.app)?;
            let api = ctx.api()?;
            let attachment = resolve(&api, &app, a.target.as_deref()).await?;
            api.call(Method::POST, &pg_path(&attachment, "/diagnose"), None)
                .await?
        }
    };
    if a.json {
        return ctx.print_json(&value);
    }
    let report: Report = decode(value, "a diagnose report")?;
    write!(ctx.out, "{}", render_report(&report))?;
    Ok(())
}

/// `pg:bloat`, `pg:index-usage`, `pg:cache-hit` `[DATABASE]`: the table at `rest`.
pub async fn table(ctx: &mut Ctx<'_>, a: PgDatabase, rest: &str) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    show_rows(ctx, &api, &pg_path(&attachment, rest), false).await
}

/// What `POST /addons/{id}/postgres/explain` answers.
#[derive(Debug, Deserialize)]
struct Explained {
    plan: String,
}

/// `pg:explain [DATABASE] SQL [--no-analyze]`: prints the server's plan as it comes.
pub async fn explain(ctx: &mut Ctx<'_>, a: PgExplain) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let body = json!({ "sql": a.sql, "analyze": !a.no_analyze });
    let value: Value = api
        .call(Method::POST, &pg_path(&attachment, "/explain"), Some(&body))
        .await?;
    let explained: Explained =
        decode(value, "a query plan").map_err(|_| anyhow!("The server sent no query plan."))?;
    let plan = explained.plan;
    write!(ctx.out, "{plan}")?;
    if !plan.ends_with('\n') {
        writeln!(ctx.out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_ids_are_uuids() {
        assert!(is_report_id("5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5f"));
        assert!(is_report_id("5F4C2A10-9B3E-4C1D-8E2F-0A1B2C3D4E5F"));
        assert!(!is_report_id("DATABASE"));
        assert!(!is_report_id("DATABASE_URL"));
        assert!(!is_report_id("postgresql-concave-52656"));
        assert!(!is_report_id("5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5"));
        assert!(!is_report_id("5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5g"));
        assert!(!is_report_id("5f4c2a109b3e4c1d8e2f0a1b2c3d4e5f"));
    }

    #[test]
    fn reports_put_red_first_and_skipped_last() {
        let report: Report = serde_json::from_value(json!({
            "id": "5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5f",
            "created_at": "2026-11-26T15:10:00Z",
            "app": "shop", "database": "DATABASE",
            "addon": {"id": "a1", "name": "postgresql-x"},
            "checks": [
                {"name": "Load", "status": "skipped", "message": "no host\n  metrics",
                 "results": {"columns": [], "rows": []}},
                {"name": "Connection Count", "status": "green", "message": null,
                 "results": {"columns": ["count"], "rows": [["1"]]}},
                {"name": "Sequences", "status": "yellow", "message": "Nearly out of values.",
                 "results": {"columns": ["sequence", "percent"], "rows": [["a_id_seq", "80.00"]]}},
                {"name": "Hit Rate", "status": "red", "message": "Below 99 %.",
                 "results": {"columns": [], "rows": []}},
                {"name": "Schema Count", "status": "skipped"},
            ],
        }))
        .unwrap();
        assert_eq!(
            render_report(&report),
            "Report 5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5f for shop::DATABASE\n\
             available for one month after creation on 2026-11-26 15:10:00 +0000\n\
             \n\
             RED: Hit Rate\n\
             Below 99 %.\n\
             \n\
             YELLOW: Sequences\n\
             Nearly out of values.\n \
             sequence | percent \n\
             ----------+---------\n \
             a_id_seq |   80.00\n\
             (1 row)\n\
             \n\
             GREEN: Connection Count\n\
             SKIPPED: Load (no host metrics)\n\
             SKIPPED: Schema Count\n"
        );
    }
}

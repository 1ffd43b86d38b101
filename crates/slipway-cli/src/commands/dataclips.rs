//! `dataclips`, `dataclips:create`, `dataclips:info`, `dataclips:update`, `dataclips:destroy`,
//! `dataclips:run`, `dataclips:share`, `dataclips:unshare`, `dataclips:rotate`,
//! `dataclips:revoke`: saved read-only queries on an app's Postgres add-on, served through
//! `/apps/{app}/dataclips`. A dataclip is named by its title or id. Its secret link (`url`) is
//! only in the answers to create and rotate, so it is printed then and never again.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::addons::Named;
use super::pg::cell_text;
use super::{Ctx, ExitStatus};
use crate::api::{decode, decode_all, seg};
use crate::args::{
    AppJson, DataclipArg, DataclipArgs, DataclipsCreate, DataclipsDestroy, DataclipsRun,
    DataclipsShare, DataclipsUpdate,
};
use crate::env::Input;
use crate::format::{csv, header, key_values, psql_table, shell_quote, time_ago, titled_table};

/// The account that made a dataclip.
#[derive(Debug, Default, Deserialize)]
struct Creator {
    #[serde(default)]
    email: String,
}

/// A dataclip as `/apps/{app}/dataclips` returns it.
#[derive(Debug, Deserialize)]
struct Dataclip {
    title: String,
    #[serde(default)]
    sql: String,
    /// The Postgres add-on it reads.
    #[serde(default)]
    addon: Option<Named>,
    /// The attachment it was created through (`DATABASE`).
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    creator: Option<Creator>,
    /// Anyone holding the link may read the results.
    #[serde(default)]
    everyone: bool,
    /// Whether the dataclip has a working link (false once revoked).
    #[serde(default = "yes")]
    link: bool,
    /// Accounts that may read the results through the link.
    #[serde(default)]
    shared_with: Vec<String>,
    /// The link, only in the answers to create and rotate.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}

fn yes() -> bool {
    true
}

impl Dataclip {
    /// Who may read it through the link: `revoked`, `everyone`, `2 users`, or `link` (only the
    /// app's own accounts).
    fn shared(&self) -> String {
        if !self.link {
            return "revoked".to_owned();
        }
        if self.everyone {
            return "everyone".to_owned();
        }
        match self.shared_with.len() {
            0 => "link".to_owned(),
            1 => "1 user".to_owned(),
            n => format!("{n} users"),
        }
    }

    fn database(&self) -> String {
        self.database
            .clone()
            .filter(|d| !d.is_empty())
            .or_else(|| self.addon.as_ref().map(|a| a.name.clone()))
            .unwrap_or_default()
    }
}

/// What `GET /apps/{app}/dataclips/{clip}/result` answers.
#[derive(Debug, Deserialize)]
struct ClipResult {
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
    #[serde(default)]
    row_count: Option<u64>,
    #[serde(default)]
    truncated: bool,
}

impl ClipResult {
    fn rows(&self) -> Vec<Vec<Option<String>>> {
        self.values
            .iter()
            .map(|row| row.iter().map(cell_text).collect())
            .collect()
    }

    /// The line saying the rows shown are not all of them, when they are not.
    fn truncation_note(&self) -> Option<String> {
        if !self.truncated {
            return None;
        }
        let shown = self.values.len() as u64;
        Some(match self.row_count.filter(|n| *n > shown) {
            Some(total) => format!("Only the first {shown} of {total} rows are shown."),
            None => format!("Only the first {shown} rows are shown; the query returned more."),
        })
    }
}

fn clips_path(app: &str) -> String {
    format!("/apps/{}/dataclips", seg(app))
}

fn clip_path(app: &str, clip: &str) -> String {
    format!("/apps/{}/dataclips/{}", seg(app), seg(clip))
}

/// The query of `dataclips:create` and `dataclips:update`: `--sql`, else the file, else (when
/// `stdin` allows it) standard input unless it is a terminal. `None` when none was given.
fn read_sql(
    ctx: &Ctx<'_>,
    sql: Option<&str>,
    file: Option<&Path>,
    stdin: bool,
) -> Result<Option<String>> {
    let text = if let Some(sql) = sql {
        sql.to_owned()
    } else if let Some(file) = file {
        let path = ctx.env.cwd.join(file);
        std::fs::read_to_string(&path)
            .with_context(|| format!("Cannot read the SQL file {}", file.display()))?
    } else if !stdin {
        return Ok(None);
    } else {
        match &ctx.env.input {
            Input::Text(text) => text.clone(),
            Input::Inherit => {
                let mut input = std::io::stdin();
                if input.is_terminal() {
                    return Ok(None);
                }
                let mut text = String::new();
                input
                    .read_to_string(&mut text)
                    .context("Cannot read the SQL from standard input")?;
                text
            }
        }
    };
    if text.trim().is_empty() {
        if stdin && sql.is_none() && file.is_none() {
            return Ok(None);
        }
        bail!("The SQL is empty.");
    }
    Ok(Some(text.trim().to_owned()))
}

/// Prints a new link and its CSV and JSON forms.
fn print_url(ctx: &mut Ctx<'_>, url: &str) -> Result<()> {
    let rows = vec![
        ("URL".to_owned(), url.to_owned()),
        ("CSV".to_owned(), format!("{url}.csv")),
        ("JSON".to_owned(), format!("{url}.json")),
    ];
    write!(ctx.out, "{}", key_values(&rows))?;
    Ok(())
}

/// `dataclips`: the app's dataclips.
pub async fn list(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let items = api.list(&clips_path(&app), None, true).await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let mut clips: Vec<Dataclip> = decode_all(items, "a dataclip")?;
    if clips.is_empty() {
        writeln!(
            ctx.out,
            "⬢ {app} has no dataclips. Create one with slipway dataclips:create TITLE --sql SQL -a {app}."
        )?;
        return Ok(());
    }
    clips.sort_by(|x, y| x.title.cmp(&y.title));
    let rows: Vec<Vec<String>> = clips
        .iter()
        .map(|c| {
            vec![
                c.title.clone(),
                c.database(),
                c.shared(),
                c.updated_at
                    .map(|t| time_ago(t, ctx.now))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        ctx.out,
        "{}{}",
        header(&format!("{app} Dataclips")),
        titled_table(&["Title", "Database", "Shared", "Updated"], &rows)
    )?;
    Ok(())
}

/// `dataclips:create TITLE [--sql SQL | -f FILE | SQL on stdin] [--database DATABASE]`: prints
/// the link, which is shown only now.
pub async fn create(ctx: &mut Ctx<'_>, a: DataclipsCreate) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let sql = read_sql(ctx, a.sql.as_deref(), a.file.as_deref(), true)?.ok_or_else(|| {
        anyhow!("No SQL given. Pass --sql SQL or -f FILE, or pipe the query on standard input.")
    })?;
    let api = ctx.api()?;
    let mut body = json!({ "title": a.title, "sql": sql });
    if let Some(db) = &a.database {
        body["database"] = json!(db);
    }
    let path = clips_path(&app);
    if a.json {
        let value = api.call(Method::POST, &path, Some(&body)).await?;
        return ctx.print_json(&value);
    }
    let label = format!("Creating dataclip {} on ⬢ {app}", a.title);
    let value = ctx
        .action(&label, api.call(Method::POST, &path, Some(&body)))
        .await?;
    writeln!(ctx.out, "done")?;
    let clip: Dataclip = decode(value, "a dataclip")?;
    match clip.url.as_deref() {
        Some(url) => {
            print_url(ctx, url)?;
            writeln!(
                ctx.out,
                "This URL is shown only now. slipway dataclips:rotate {} -a {app} makes a new one.",
                shell_quote(&clip.title)
            )?;
        }
        None => writeln!(
            ctx.out,
            "Slipway sent no URL. slipway dataclips:rotate {} -a {app} makes one.",
            shell_quote(&clip.title)
        )?,
    }
    Ok(())
}

/// `dataclips:info CLIP`.
pub async fn info(ctx: &mut Ctx<'_>, a: DataclipArgs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = api.get(&clip_path(&app, &a.clip)).await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let c: Dataclip = decode(value, "a dataclip")?;
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut rows: Vec<(String, String)> = vec![
        ("Title".into(), c.title.clone()),
        ("Database".into(), c.database()),
    ];
    if let Some(addon) = c.addon.as_ref().filter(|a| !a.name.is_empty()) {
        rows.push(("Add-on".into(), addon.name.clone()));
    }
    if let Some(creator) = c.creator.as_ref().filter(|c| !c.email.is_empty()) {
        rows.push(("Creator".into(), creator.email.clone()));
    }
    let link = if c.link { "active" } else { "revoked" };
    rows.push(("Link".into(), link.to_owned()));
    rows.push(("Everyone with the link".into(), yes_no(c.everyone)));
    let shared = if c.shared_with.is_empty() {
        "nobody".to_owned()
    } else {
        c.shared_with.join("\n")
    };
    rows.push(("Shared with".into(), shared));
    if let Some(t) = c.created_at {
        rows.push(("Created".into(), time_ago(t, ctx.now)));
    }
    if let Some(t) = c.updated_at {
        rows.push(("Updated".into(), time_ago(t, ctx.now)));
    }
    write!(
        ctx.out,
        "{}{}\n{}{}\n",
        header(&c.title),
        key_values(&rows),
        header("SQL"),
        c.sql.trim_end()
    )?;
    Ok(())
}

/// `dataclips:update CLIP [--title TITLE] [--sql SQL | -f FILE]`.
pub async fn update(ctx: &mut Ctx<'_>, a: DataclipsUpdate) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let sql = read_sql(ctx, a.sql.as_deref(), a.file.as_deref(), false)?;
    let mut body = Map::new();
    if let Some(title) = &a.title {
        body.insert("title".into(), json!(title));
    }
    if let Some(sql) = sql {
        body.insert("sql".into(), json!(sql));
    }
    if body.is_empty() {
        bail!("Nothing to change. Give --title TITLE, --sql SQL or -f FILE.");
    }
    let body = Value::Object(body);
    let api = ctx.api()?;
    let path = clip_path(&app, &a.clip);
    if a.json {
        let value = api.call(Method::PATCH, &path, Some(&body)).await?;
        return ctx.print_json(&value);
    }
    let label = format!("Updating dataclip {} on ⬢ {app}", a.clip);
    ctx.action(&label, api.call(Method::PATCH, &path, Some(&body)))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `dataclips:destroy CLIP --confirm APP`: refuses without the app's name, before any request.
pub async fn destroy(ctx: &mut Ctx<'_>, a: DataclipsDestroy) -> Result<()> {
    let app = ctx.app(&a.app)?;
    if a.confirm.as_deref() != Some(app.as_str()) {
        writeln!(
            ctx.err,
            " ▸    This will permanently destroy dataclip {} on {app}; its link will stop working. To proceed, run: slipway dataclips:destroy {} -a {app} --confirm {app}",
            a.clip, shell_quote(&a.clip)
        )?;
        ctx.err.flush()?;
        return Err(ExitStatus(1).into());
    }
    let api = ctx.api()?;
    let label = format!("Destroying dataclip {} on ⬢ {app}", a.clip);
    ctx.action(
        &label,
        api.call(Method::DELETE, &clip_path(&app, &a.clip), None),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `dataclips:run CLIP [--csv | --json]`: the result as `psql` prints a table, as CSV, or as
/// the server's JSON.
pub async fn run(ctx: &mut Ctx<'_>, a: DataclipsRun) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("{}/result", clip_path(&app, &a.clip));
    let value = api.get(&path).await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let result: ClipResult = decode(value, "a dataclip result")?;
    let rows = result.rows();
    if a.csv {
        write!(ctx.out, "{}", csv(&result.fields, &rows))?;
        // On the error writer, so the CSV stays whole.
        if let Some(note) = result.truncation_note() {
            ctx.warn(&note)?;
        }
        return Ok(());
    }
    let mut table = psql_table(&result.fields, &rows);
    if let Some(note) = result.truncation_note() {
        // Under `(N rows)`, before the blank line that ends the table.
        table.pop();
        table.push_str(&note);
        table.push_str("\n\n");
    }
    write!(ctx.out, "{table}")?;
    Ok(())
}

/// `dataclips:share CLIP (--everyone | --user EMAIL)`.
pub async fn share(ctx: &mut Ctx<'_>, a: DataclipsShare) -> Result<()> {
    set_share(ctx, a, true).await
}

/// `dataclips:unshare CLIP (--everyone | --user EMAIL)`.
pub async fn unshare(ctx: &mut Ctx<'_>, a: DataclipsShare) -> Result<()> {
    set_share(ctx, a, false).await
}

async fn set_share(ctx: &mut Ctx<'_>, a: DataclipsShare, on: bool) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = clip_path(&app, &a.clip);
    let verb = if on { "Sharing" } else { "Unsharing" };
    let (label, method, path, body) = match &a.user {
        Some(email) => (
            format!("{verb} dataclip {} with {email} on ⬢ {app}", a.clip),
            if on { Method::PUT } else { Method::DELETE },
            format!("{path}/shares/{}", seg(email)),
            None,
        ),
        None => (
            format!(
                "{verb} dataclip {} with anyone holding its link on ⬢ {app}",
                a.clip
            ),
            Method::PATCH,
            path,
            Some(json!({ "everyone": on })),
        ),
    };
    let value = ctx
        .action(&label, api.call(method, &path, body.as_ref()))
        .await?;
    writeln!(ctx.out, "done")?;
    // Sharing a dataclip whose link was revoked gives no one a way to read it yet.
    if on {
        if let Ok(clip) = decode::<Dataclip>(value, "a dataclip") {
            if !clip.link {
                ctx.warn(&format!(
                    "{} has no working link. slipway dataclips:rotate {} -a {app} makes one.",
                    clip.title,
                    shell_quote(&clip.title)
                ))?;
            }
        }
    }
    Ok(())
}

/// `dataclips:rotate CLIP`: a new link, printed once; the old one stops working at once.
pub async fn rotate(ctx: &mut Ctx<'_>, a: DataclipArg) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("{}/actions/rotate", clip_path(&app, &a.clip));
    let label = format!("Rotating the link of dataclip {} on ⬢ {app}", a.clip);
    let value = ctx
        .action(&label, api.call(Method::POST, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    let clip: Dataclip = decode(value, "a dataclip")?;
    let url = clip
        .url
        .as_deref()
        .ok_or_else(|| anyhow!("Slipway sent no URL for the new link."))?;
    print_url(ctx, url)?;
    writeln!(
        ctx.out,
        "The old URL no longer works. This URL is shown only now; slipway dataclips:rotate {} -a {app} makes a new one.",
        shell_quote(&clip.title)
    )?;
    Ok(())
}

/// `dataclips:revoke CLIP`: the link stops working; `dataclips:rotate` makes a new one.
pub async fn revoke(ctx: &mut Ctx<'_>, a: DataclipArg) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("{}/actions/revoke", clip_path(&app, &a.clip));
    let label = format!("Revoking the link of dataclip {} on ⬢ {app}", a.clip);
    let value = ctx
        .action(&label, api.call(Method::POST, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    let title = decode::<Dataclip>(value, "a dataclip")
        .map(|c| c.title)
        .unwrap_or_else(|_| a.clip.clone());
    writeln!(
        ctx.out,
        "The link no longer works. slipway dataclips:rotate {} -a {app} makes a new one.",
        shell_quote(&title)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(v: Value) -> Dataclip {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn shared_column() {
        let base = json!({"title": "t", "everyone": false, "link": true, "shared_with": []});
        assert_eq!(clip(base.clone()).shared(), "link");
        let mut v = base.clone();
        v["shared_with"] = json!(["a@b.c"]);
        assert_eq!(clip(v.clone()).shared(), "1 user");
        v["shared_with"] = json!(["a@b.c", "d@e.f"]);
        assert_eq!(clip(v.clone()).shared(), "2 users");
        v["everyone"] = json!(true);
        assert_eq!(clip(v.clone()).shared(), "everyone");
        v["link"] = json!(false);
        assert_eq!(clip(v).shared(), "revoked");
    }

    #[test]
    fn truncation_notes() {
        let result = |v: Value| serde_json::from_value::<ClipResult>(v).unwrap();
        let r = result(
            json!({"fields": ["a"], "values": [["1"], [null]], "row_count": 2,
                              "truncated": false}),
        );
        assert_eq!(r.truncation_note(), None);
        assert_eq!(r.rows(), vec![vec![Some("1".to_owned())], vec![None]]);
        let r = result(
            json!({"fields": ["a"], "values": [["1"], ["2"]], "row_count": 2,
                              "truncated": true}),
        );
        assert_eq!(
            r.truncation_note().as_deref(),
            Some("Only the first 2 rows are shown; the query returned more.")
        );
        let r = result(json!({"fields": ["a"], "values": [["1"]], "row_count": 5,
                              "truncated": true}));
        assert_eq!(
            r.truncation_note().as_deref(),
            Some("Only the first 1 of 5 rows are shown.")
        );
    }
}

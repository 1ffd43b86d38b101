//! `ps`, `ps:scale`, `ps:restart`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_types::{Dyno, Formation};

use super::Ctx;
use crate::api::{decode_all, seg};
use crate::args::{
    parse_scale_change, Ps, PsRestart, PsScale, PsSetting, PsStop, PsType, PsWait, Run, ScaleChange,
};
use crate::format::{dyno_sort_key, header, time_ago};

/// `ps [TYPE...]`: dynos grouped by process type, size and command; one-off dynos first.
pub async fn list(ctx: &mut Ctx<'_>, a: Ps) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let mut items = api
        .list(&format!("/apps/{}/dynos", seg(&app)), None, true)
        .await?;
    if !a.types.is_empty() {
        items.retain(|d| {
            d.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| a.types.iter().any(|w| w == t))
        });
    }
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let mut dynos: Vec<Dyno> = decode_all(items, "a dyno")?;
    if dynos.is_empty() {
        if a.types.is_empty() {
            writeln!(ctx.out, "No dynos on {app}.")?;
        } else {
            writeln!(ctx.out, "No {} dynos on {app}.", a.types.join(", "))?;
        }
        return Ok(());
    }
    dynos.sort_by_key(|d| dyno_sort_key(&d.name));
    let (one_off, processes): (Vec<Dyno>, Vec<Dyno>) =
        dynos.into_iter().partition(|d| d.process_type == "run");
    let mut sections: Vec<String> = Vec::new();
    if !one_off.is_empty() {
        let mut s = header(&format!("run: one-off processes ({})", one_off.len()));
        for d in &one_off {
            s.push_str(&format!(
                "{} ({}): {} {}: {}\n",
                d.name,
                d.size,
                d.state,
                time_ago(d.updated_at, ctx.now),
                d.command
            ));
        }
        sections.push(s);
    }
    let mut groups: BTreeMap<(String, String, String), Vec<&Dyno>> = BTreeMap::new();
    for d in &processes {
        let key = (d.process_type.clone(), d.size.clone(), d.command.clone());
        groups.entry(key).or_default().push(d);
    }
    for ((ty, size, command), ds) in &groups {
        let mut s = header(&format!("{ty} ({size}): {command} ({})", ds.len()));
        for d in ds {
            let next = match d.restart_at {
                Some(at) if d.state == "crashed" => {
                    let mins = (at - ctx.now).num_minutes().max(0);
                    format!(", restarting in ~ {mins}m ({})", at.format("%H:%M:%S %z"))
                }
                _ => String::new(),
            };
            s.push_str(&format!(
                "{}: {} {}{next}\n",
                d.name,
                d.state,
                time_ago(d.updated_at, ctx.now)
            ));
        }
        sections.push(s);
    }
    write!(ctx.out, "{}", sections.join("\n"))?;
    Ok(())
}

fn formation_list(value: Value) -> Result<Vec<Formation>> {
    let items = match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        single => vec![single],
    };
    decode_all(items, "a formation")
}

/// `ps:scale [TYPE=N...]`: without changes, prints the formation as `web=1:basic worker=0:basic`.
pub async fn scale(ctx: &mut Ctx<'_>, a: PsScale) -> Result<()> {
    let changes: Vec<ScaleChange> = a
        .changes
        .iter()
        .map(|c| parse_scale_change(c))
        .collect::<Result<_>>()?;
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("/apps/{}/formation", seg(&app));
    if changes.is_empty() {
        let mut formation: Vec<Formation> =
            decode_all(api.list(&path, None, true).await?, "a formation")?;
        if formation.is_empty() {
            bail!("No process types on {app}. Upload a Procfile to add process types.");
        }
        formation.sort_by(|x, y| x.process_type.cmp(&y.process_type));
        let text: Vec<String> = formation
            .iter()
            .map(|f| format!("{}={}:{}", f.process_type, f.quantity, f.size))
            .collect();
        writeln!(ctx.out, "{}", text.join(" "))?;
        return Ok(());
    }
    let updates: Vec<Value> = changes
        .iter()
        .map(|c| {
            let mut u = json!({ "type": c.process_type, "quantity": c.quantity });
            if let Some(size) = &c.size {
                u["size"] = json!(size);
            }
            u
        })
        .collect();
    let body = json!({ "updates": updates });
    let value = ctx
        .action("Scaling dynos", api.call(Method::PATCH, &path, Some(&body)))
        .await?;
    let formation = formation_list(value)?;
    let mut parts: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for c in &changes {
        if seen.contains(&c.process_type.as_str()) {
            continue;
        }
        seen.push(&c.process_type);
        if let Some(f) = formation.iter().find(|f| f.process_type == c.process_type) {
            parts.push(format!("{} at {}:{}", f.process_type, f.quantity, f.size));
        }
    }
    if parts.is_empty() {
        writeln!(ctx.out, "done")?;
    } else {
        writeln!(ctx.out, "done, now running {}", parts.join(", "))?;
    }
    Ok(())
}

/// `ps:type [TYPE=SIZE...|SIZE]`: changes dyno sizes; without arguments shows them.
pub async fn resize(ctx: &mut Ctx<'_>, a: PsType) -> Result<()> {
    ctx.labels_to_err = a.json;
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("/apps/{}/formation", seg(&app));
    let current: Vec<Formation> = decode_all(api.list(&path, None, true).await?, "a formation")?;
    if current.is_empty() {
        bail!("No process types on {app}. Upload a Procfile to add process types.");
    }
    let mut updates: Vec<Value> = Vec::new();
    for change in &a.changes {
        match change.split_once('=') {
            Some((ty, size)) if !ty.is_empty() && !size.is_empty() => {
                updates.push(json!({ "type": ty, "size": size }))
            }
            Some(_) => bail!("Invalid argument {change:?}: use TYPE=SIZE, e.g. web=standard-2x."),
            // One size for every process type.
            None => updates.extend(
                current
                    .iter()
                    .map(|f| json!({ "type": f.process_type, "size": change })),
            ),
        }
    }
    let formation = if updates.is_empty() {
        current
    } else {
        let body = json!({ "updates": updates });
        let value = ctx
            .action(
                &format!("Scaling dynos on {app}"),
                api.call(Method::PATCH, &path, Some(&body)),
            )
            .await?;
        formation_list(value)?
    };
    if !updates.is_empty() {
        ctx.done()?;
    }
    if a.json {
        writeln!(ctx.out, "{}", serde_json::to_string_pretty(&formation)?)?;
        return Ok(());
    }
    let mut rows = vec![vec![
        "Type".to_string(),
        "Size".to_string(),
        "Qty".to_string(),
    ]];
    let mut sorted = formation;
    sorted.sort_by(|x, y| x.process_type.cmp(&y.process_type));
    for f in &sorted {
        rows.push(vec![
            f.process_type.clone(),
            f.size.clone(),
            f.quantity.to_string(),
        ]);
    }
    writeln!(ctx.out, "=== Process Types\n")?;
    write!(ctx.out, "{}", crate::format::table(&rows))?;
    Ok(())
}

/// `ps:stop DYNO` or `ps:stop TYPE`.
pub async fn stop(ctx: &mut Ctx<'_>, a: PsStop) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let (path, label) = if a.dyno.contains('.') {
        (
            format!("/apps/{}/dynos/{}/actions/stop", seg(&app), seg(&a.dyno)),
            format!("Stopping {} dyno on {app}", a.dyno),
        )
    } else {
        (
            format!(
                "/apps/{}/formations/{}/actions/stop",
                seg(&app),
                seg(&a.dyno)
            ),
            format!("Stopping {} dynos on {app}", a.dyno),
        )
    };
    ctx.action(&label, api.call(Method::POST, &path, Some(&json!({}))))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `run` and `run:detached`: a one-off dyno.
pub async fn run(ctx: &mut Ctx<'_>, a: Run, attach: bool) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    // As Heroku's CLI does: the words joined by spaces, run by the dyno's shell.
    let command = a.command.join(" ");
    let mut env = serde_json::Map::new();
    for pair in a
        .env
        .iter()
        .flat_map(|e| e.split(';'))
        .filter(|p| !p.trim().is_empty())
    {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("Invalid --env {pair:?}: use KEY=value;KEY2=value2.");
        };
        env.insert(k.trim().to_string(), json!(v));
    }
    use std::io::IsTerminal;
    let tty = attach && !a.no_tty && std::io::stdin().is_terminal();
    if tty {
        if let Ok(term) = std::env::var("TERM") {
            env.entry("TERM").or_insert(json!(term));
        }
        if let Some((cols, rows)) = super::attach::terminal_size() {
            env.entry("COLUMNS").or_insert(json!(cols.to_string()));
            env.entry("LINES").or_insert(json!(rows.to_string()));
        }
    }
    let mut body = json!({ "command": command, "attach": attach, "env": env });
    if attach && !tty {
        body["force_no_tty"] = json!(true);
    }
    if let Some(size) = &a.size {
        body["size"] = json!(size);
    }
    let path = format!("/apps/{}/dynos", seg(&app));
    if attach && !a.json {
        let ca_file = ctx.env.ca_file().ok_or_else(|| {
            anyhow::anyhow!("Cannot find the server's CA certificate: set SLIPWAY_CA_FILE.")
        })?;
        write!(ctx.err, "Running {command} on {app}... ")?;
        ctx.err.flush()?;
        let dyno = match api.call(Method::POST, &path, Some(&body)).await {
            Ok(d) => d,
            Err(e) => {
                writeln!(ctx.err, "!")?;
                return Err(e);
            }
        };
        let name = dyno
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("run")
            .to_string();
        let size = dyno
            .get("size")
            .and_then(Value::as_str)
            .unwrap_or("basic")
            .to_string();
        let url = dyno
            .get("attach_url")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("The server did not give an attach URL for {name}."))?
            .to_string();
        let err = &mut *ctx.err;
        let mut up = false;
        let attached = super::attach::attach(&url, &ca_file, tty, &mut *ctx.out, || {
            up = true;
            writeln!(err, "up, {name} ({size})")?;
            err.flush()?;
            Ok(())
        })
        .await;
        // A failure before the dyno came up ends the `Running ...` line first.
        if attached.is_err() && !up {
            writeln!(ctx.err, "!")?;
        }
        let code = attached?;
        if code != 0 {
            return Err(super::ExitStatus(code).into());
        }
        return Ok(());
    }
    ctx.labels_to_err = a.json;
    let dyno = ctx
        .action(
            &format!("Running {command} on {app}"),
            api.call(Method::POST, &path, Some(&body)),
        )
        .await?;
    if a.json {
        ctx.done()?;
        writeln!(ctx.out, "{}", serde_json::to_string_pretty(&dyno)?)?;
        return Ok(());
    }
    let name = dyno.get("name").and_then(Value::as_str).unwrap_or("run");
    let size = dyno.get("size").and_then(Value::as_str).unwrap_or("basic");
    writeln!(ctx.out, "done, {name} ({size})")?;
    writeln!(
        ctx.out,
        "Run slipway logs --app {app} --dyno {name} to see the output."
    )?;
    Ok(())
}

/// `ps:restart [web|web.1]`: every dyno, one process type's dynos, or one dyno.
pub async fn restart(ctx: &mut Ctx<'_>, a: PsRestart) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let (dyno, process_type) = match (a.dyno_name, a.process_type, a.target) {
        (Some(d), _, _) => (Some(d), None),
        (None, Some(p), _) => (None, Some(p)),
        (None, None, Some(t)) if t.contains('.') => (Some(t), None),
        (None, None, t) => (None, t),
    };
    let app_seg = seg(&app);
    let (path, label) = match (dyno, process_type) {
        (Some(d), _) => (
            format!("/apps/{app_seg}/dynos/{}", seg(&d)),
            format!("Restarting {d} dyno on {app}"),
        ),
        (None, Some(t)) => (
            format!("/apps/{app_seg}/formations/{}", seg(&t)),
            format!("Restarting {t} dynos on {app}"),
        ),
        (None, None) => (
            format!("/apps/{app_seg}/dynos"),
            format!("Restarting dynos on {app}"),
        ),
    };
    ctx.action(&label, api.call(Method::DELETE, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `ps:wait`: polls until every formation dyno (of `--type`) is up on the current release.
pub async fn wait(ctx: &mut Ctx<'_>, a: PsWait) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let releases = api
        .list(
            &format!("/apps/{}/releases", seg(&app)),
            Some("version ..; max=50, order=desc"),
            false,
        )
        .await?;
    let current = releases
        .iter()
        .find(|r| r["current"] == true)
        .and_then(|r| r["version"].as_i64())
        .ok_or_else(|| anyhow::anyhow!("{app} has no current release yet."))?;
    let started = std::time::Instant::now();
    write!(
        ctx.out,
        "Waiting for every dyno to be running v{current}... "
    )?;
    ctx.out.flush()?;
    loop {
        let formation: Vec<Formation> = decode_all(
            api.list(&format!("/apps/{}/formation", seg(&app)), None, true)
                .await?,
            "a formation",
        )?;
        let dynos: Vec<Dyno> = decode_all(
            api.list(&format!("/apps/{}/dynos", seg(&app)), None, true)
                .await?,
            "a dyno",
        )?;
        let wanted = |t: &str| a.process_type.as_deref().is_none_or(|w| w == t);
        let total: u32 = formation
            .iter()
            .filter(|f| wanted(&f.process_type))
            .map(|f| f.quantity)
            .sum();
        let on_current = dynos
            .iter()
            .filter(|d| {
                d.process_type != "run" && d.process_type != "release" && wanted(&d.process_type)
            })
            .filter(|d| d.release.version == current && d.state == "up")
            .count() as u32;
        let others = dynos
            .iter()
            .filter(|d| {
                d.process_type != "run" && d.process_type != "release" && wanted(&d.process_type)
            })
            .any(|d| d.release.version != current);
        if on_current >= total && !others {
            writeln!(ctx.out, "{on_current} / {total}, done")?;
            return Ok(());
        }
        if a.timeout.is_some_and(|t| started.elapsed().as_secs() >= t) {
            writeln!(ctx.out, "{on_current} / {total}")?;
            bail!(
                "Timed out: {on_current} of {total} dynos run v{current}. See slipway ps and slipway logs."
            );
        }
        tokio::time::sleep(std::time::Duration::from_secs(a.wait_interval.max(1))).await;
    }
}

/// `ps:boot-timeout [SECONDS|default]` and `ps:cycling [daily|off|HH:MM]`.
pub async fn setting(ctx: &mut Ctx<'_>, a: PsSetting, field: &str) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("/apps/{}", seg(&app));
    let show = |info: &Value| -> String {
        match (field, &info[field]) {
            ("boot_timeout", Value::Number(n)) => format!("{n} seconds"),
            ("boot_timeout", _) => "default (the server's, normally 60 seconds)".into(),
            (_, Value::String(s)) if s.contains(':') => format!("daily at {s} UTC"),
            (_, Value::String(s)) if s == "daily" => {
                "daily (24 h after each start, plus up to 216 minutes)".into()
            }
            (_, Value::String(s)) => s.clone(),
            _ => "daily".into(),
        }
    };
    let label = if field == "boot_timeout" {
        "Boot timeout"
    } else {
        "Dyno cycling"
    };
    let Some(value) = a.value else {
        let info = api.call(Method::GET, &path, None).await?;
        writeln!(ctx.out, "{label} for {app}: {}", show(&info))?;
        return Ok(());
    };
    let body = if field == "boot_timeout" {
        if value == "default" {
            json!({ field: null })
        } else {
            let secs: u64 = value.trim_end_matches('s').parse().map_err(|_| {
                anyhow::anyhow!("{value:?} is not a number of seconds (1-120) or `default`.")
            })?;
            json!({ field: secs })
        }
    } else {
        json!({ field: value })
    };
    let info = ctx
        .action(
            &format!("Setting {} for {app}", label.to_lowercase()),
            api.call(Method::PATCH, &path, Some(&body)),
        )
        .await?;
    writeln!(ctx.out, "done, {}", show(&info))?;
    Ok(())
}

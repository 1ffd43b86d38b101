//! `access`, `access:add`, `access:remove`: the accounts that may use an app besides its owner
//! (collaborators), through `/apps/{app}/collaborators`. The list includes the owner, with the
//! role `owner`. Only the owner adds or removes collaborators; a collaborator may remove itself.

use anyhow::Result;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Ctx;
use crate::api::{decode_all, seg};
use crate::args::{AccessArgs, AppJson};
use crate::format::{header, titled_table};

/// The account a collaborator entry names.
#[derive(Debug, Default, Deserialize)]
struct User {
    #[serde(default)]
    email: String,
}

/// A collaborator as `/apps/{app}/collaborators` returns it.
#[derive(Debug, Deserialize)]
struct Collaborator {
    #[serde(default)]
    user: User,
    /// `owner` or `collaborator` (Heroku leaves it empty on apps outside teams).
    #[serde(default)]
    role: Option<String>,
}

impl Collaborator {
    fn role(&self) -> &str {
        self.role
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or("collaborator")
    }

    fn is_owner(&self) -> bool {
        self.role() == "owner"
    }
}

/// The owner first, then the collaborators by email.
fn sort(collaborators: &mut [Collaborator]) {
    collaborators
        .sort_by(|x, y| (!x.is_owner(), &x.user.email).cmp(&(!y.is_owner(), &y.user.email)));
}

fn collaborators_path(app: &str) -> String {
    format!("/apps/{}/collaborators", seg(app))
}

/// `access`: the app's owner and collaborators.
pub async fn list(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let items = api.list(&collaborators_path(&app), None, true).await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let mut collaborators: Vec<Collaborator> = decode_all(items, "a collaborator")?;
    if collaborators.is_empty() {
        writeln!(ctx.out, "⬢ {app} has no collaborators.")?;
        return Ok(());
    }
    sort(&mut collaborators);
    let rows: Vec<Vec<String>> = collaborators
        .iter()
        .map(|c| vec![c.user.email.clone(), c.role().to_owned()])
        .collect();
    write!(
        ctx.out,
        "{}{}",
        header(&format!("{app} Access List")),
        titled_table(&["Email", "Role"], &rows)
    )?;
    Ok(())
}

/// `access:add EMAIL`: the account must already exist on the server.
pub async fn add(ctx: &mut Ctx<'_>, a: AccessArgs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let body = json!({ "user": a.email });
    let label = format!("Adding {} access to the app {app}", a.email);
    ctx.action(
        &label,
        api.call(Method::POST, &collaborators_path(&app), Some(&body)),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `access:remove EMAIL`.
pub async fn remove(ctx: &mut Ctx<'_>, a: AccessArgs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("{}/{}", collaborators_path(&app), seg(&a.email));
    let label = format!("Removing {} access from the app {app}", a.email);
    ctx.action(&label, api.call(Method::DELETE, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_first_then_collaborators_by_email() {
        let mut list: Vec<Collaborator> = decode_all(
            vec![
                json!({"role": "collaborator", "user": {"email": "zed@example.com"}}),
                json!({"role": null, "user": {"email": "bob@example.com"}}),
                json!({"role": "owner", "user": {"email": "owner@example.com"}}),
                json!({"role": "collaborator", "user": {"email": "amy@example.com"}}),
            ],
            "a collaborator",
        )
        .unwrap();
        sort(&mut list);
        let rows: Vec<(&str, &str)> = list
            .iter()
            .map(|c| (c.user.email.as_str(), c.role()))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("owner@example.com", "owner"),
                ("amy@example.com", "collaborator"),
                ("bob@example.com", "collaborator"),
                ("zed@example.com", "collaborator"),
            ]
        );
    }
}

//! `rvcctl apikey create|list|revoke|verify`: API keys of the HTTP and gRPC APIs.
//!
//! The secret exists only in the output of `create`: Postgres keeps its SHA-256. A revoked key
//! is refused by every API replica within its key cache TTL (AUTH_CACHE_TTL_SECS, 10 s).
use crate::error::CtlError;
use crate::output::{opt_when, print_json, when, Table};
use crate::Ctx;
use chrono::{DateTime, Utc};
use rvc_auth::Scope;
use serde::Serialize;
use std::io::Read;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The key is printed once; only its SHA-256 is stored. Send it as
`Authorization: Bearer <key>` (HTTP) or in the `authorization` metadata (gRPC).

Scopes: catalog:write (back-office: POST/DELETE products), catalog:read (reads), recognize
(checkout photos), admin (every scope).

Examples:
  rvcctl apikey create --name backoffice --scope catalog:write --scope catalog:read
  rvcctl apikey create --name pos-store-12 --scope catalog:read --scope recognize --expires 90d
  rvcctl apikey create --name ci --scope admin --expires 2027-01-01T00:00:00Z --output json"
)]
pub struct CreateArgs {
    /// Who uses the key (an app, a store); shown by `list`, not unique.
    #[arg(long)]
    pub name: String,
    /// A scope the key grants (repeat for several).
    #[arg(long = "scope", value_enum, required = true)]
    pub scopes: Vec<Scope>,
    /// When it stops working: a duration from now (90d, 12h) or an RFC 3339 time.
    #[arg(long, value_parser = expires)]
    pub expires: Option<DateTime<Utc>>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rvcctl apikey list\n  rvcctl apikey list --all --output json")]
pub struct ListArgs {
    /// Include revoked keys.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Every API replica refuses the key within AUTH_CACHE_TTL_SECS (10 s by \
default). Revoking twice is harmless.\n\nExample:\n  rvcctl apikey revoke k3f9a0b1c2d4"
)]
pub struct RevokeArgs {
    /// The key's id (the part after `rvc_`, from `rvcctl apikey list`).
    pub id: String,
}

fn expires(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let secs = crate::parse::duration_secs(s).ok_or_else(|| {
        format!("{s:?} is neither a duration (90d, 12h, 1w) nor an RFC 3339 time")
    })?;
    chrono::Duration::try_seconds(secs)
        .and_then(|d| Utc::now().checked_add_signed(d))
        .ok_or_else(|| format!("{s:?} is too far in the future"))
}

/// `apikey create -o json` (docs/rvcctl-json.md).
#[derive(Debug, Serialize)]
pub struct CreatedKeyOutput {
    pub id: String,
    pub name: String,
    /// The full key to send; shown only here.
    pub key: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One key in `apikey list -o json`, `revoke` and `verify` (never the secret).
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

impl From<rvc_store::api_keys::ApiKeyRecord> for KeyView {
    fn from(r: rvc_store::api_keys::ApiKeyRecord) -> Self {
        let state = if r.revoked_at.is_some() {
            "revoked"
        } else if r.expires_at.is_some_and(|t| t <= Utc::now()) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: r.id,
            name: r.name,
            scopes: r.scopes,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            state,
        }
    }
}

pub async fn create(ctx: &Ctx, a: &CreateArgs) -> Result<(), CtlError> {
    let name = a.name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(CtlError::Usage("--name must be 1-128 characters".into()));
    }
    if a.expires.is_some_and(|t| t <= Utc::now()) {
        return Err(CtlError::Usage("--expires must be in the future".into()));
    }
    let client = ctx.pool.get().await?;
    let created = rvc_auth::create_key(&**client, name, &a.scopes, a.expires).await?;
    let out = CreatedKeyOutput {
        id: created.record.id,
        name: created.record.name,
        key: created.key.key,
        scopes: created.record.scopes,
        created_at: created.record.created_at,
        expires_at: created.record.expires_at,
    };
    if ctx.json() {
        return print_json(&out);
    }
    println!("created API key {} ({})", out.id, out.name);
    println!("scopes   {}", out.scopes.join(" "));
    println!("expires  {}", opt_when(out.expires_at));
    println!("\n{}\n", out.key);
    println!("This is the only time the key is shown; store it in a secret manager.");
    println!("Use it as:  curl -H 'Authorization: Bearer {}' …", out.key);
    Ok(())
}

pub async fn list(ctx: &Ctx, a: &ListArgs) -> Result<(), CtlError> {
    let client = ctx.pool.get().await?;
    let keys: Vec<KeyView> = rvc_store::api_keys::list(&**client, a.all)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    if ctx.json() {
        return print_json(&keys);
    }
    if keys.is_empty() {
        println!("no API keys; create one with `rvcctl apikey create --name NAME --scope SCOPE`");
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "SCOPES",
        "STATE",
        "CREATED",
        "LAST_USED",
        "EXPIRES",
    ]);
    for k in &keys {
        t.row(vec![
            k.id.clone(),
            k.name.clone(),
            k.scopes.join(","),
            k.state.to_owned(),
            when(k.created_at),
            opt_when(k.last_used_at),
            opt_when(k.expires_at),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

pub async fn revoke(ctx: &Ctx, a: &RevokeArgs) -> Result<(), CtlError> {
    let client = ctx.pool.get().await?;
    let k = rvc_store::api_keys::revoke(&**client, a.id.trim())
        .await?
        .ok_or_else(|| {
            CtlError::NotFound(format!(
                "no API key with id {:?}; list them with `rvcctl apikey list --all`",
                a.id
            ))
        })?;
    let view = KeyView::from(k);
    if ctx.json() {
        return print_json(&view);
    }
    println!(
        "revoked API key {} ({}) at {}; every API replica refuses it within \
         AUTH_CACHE_TTL_SECS (10 s by default)",
        view.id,
        view.name,
        opt_when(view.revoked_at)
    );
    Ok(())
}

/// Reads a key on stdin (never as an argument: it would show in `ps`) and says whether it is
/// valid now. Exit 0 valid, 1 not.
pub async fn verify(ctx: &Ctx) -> Result<(), CtlError> {
    let mut input = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut input)
        .map_err(|source| CtlError::Io {
            context: "reading the key from stdin",
            source,
        })?;
    let key = rvc_auth::key::PresentedKey::parse(input.trim())
        .map_err(|e| CtlError::Refused(format!("not an API key: {e}")))?;
    let client = ctx.pool.get().await?;
    let rec = rvc_store::api_keys::find(&**client, key.id())
        .await?
        .filter(|r| key.matches(&r.key_sha256))
        .ok_or_else(|| CtlError::Refused("unknown API key".into()))?;
    let view = KeyView::from(rec);
    if ctx.json() {
        print_json(&view)?;
    } else {
        println!(
            "{} ({}): {} [{}]",
            view.id,
            view.name,
            view.state,
            view.scopes.join(" ")
        );
    }
    if view.state == "active" {
        Ok(())
    } else {
        Err(CtlError::Refused(format!("the key is {}", view.state)))
    }
}

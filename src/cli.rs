//! Command line: `plugboard [serve]`, `migrate`, `user create`,
//! `user reset-password`, `keys …`,
//! `providers validate`, `restore mark`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::auth::store::{CreateAccountOutcome, Landing, NewUser};
use crate::auth::{normalize_email, password, validate_email, validate_name, validate_password};
use crate::config::Settings;
use crate::providers::ProviderRegistry;
use crate::storage::{self, DynStore, now};
use crate::tenancy::WorkspaceId;
use crate::tenancy::service::parse_role;
use crate::vault::{self, store::rotate_all};

#[derive(Debug, Parser)]
#[command(
    name = "plugboard",
    version,
    about = "Self-hosted, multi-tenant integrations hub"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Run sync workers only (no HTTP), to scale them apart from servers.
    Worker {
        /// How many workers (default: sync.workers, at least 1).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Manage users without the web UI.
    #[command(subcommand)]
    User(UserCommand),
    /// Encryption keys for secrets at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Provider metadata.
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// After restoring the database from a backup.
    #[command(subcommand)]
    Restore(RestoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Mark every connection's objects resync_required, then verify each
    /// connection with one refresh (or a test call): refresh tokens rotated
    /// since the backup are dead, and those connections become needs_reauth.
    Mark {
        /// When the restored backup was taken (RFC 3339, e.g. 2026-12-01T03:00:00Z).
        #[arg(long, value_parser = parse_rfc3339)]
        backup_taken_at: time::OffsetDateTime,
    },
}

fn parse_rfc3339(raw: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| "expected an RFC 3339 time such as 2026-12-01T03:00:00Z".to_owned())
}

/// `restore mark`: flags and verifies (see [`crate::sync::resync`]), then
/// prints one line per connection and a summary.
pub async fn restore_mark(
    settings: Settings,
    backup_taken_at: time::OffsetDateTime,
) -> anyhow::Result<()> {
    if backup_taken_at > now() {
        bail!("--backup-taken-at is in the future");
    }
    let state = crate::app::build_state(settings).await?;
    let summary = crate::sync::resync::mark_after_restore(&state, backup_taken_at).await?;
    println!("{summary}");
    state.store.close().await;
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. With a new --org, the user owns it and its first
    /// workspace; with an existing one, the user joins a workspace of it.
    Create(UserCreate),
    /// Set a user's password (the operator's reset): every session of the
    /// user ends and open reset links stop working.
    ResetPassword(UserResetPassword),
}

#[derive(Debug, Args)]
pub struct UserResetPassword {
    #[arg(long)]
    pub email: String,
    /// Read the new password from standard input (first line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct UserCreate {
    #[arg(long)]
    pub email: String,
    /// Display name (defaults to the part of the email before the @).
    #[arg(long)]
    pub name: Option<String>,
    /// Read the password from standard input (first line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    #[arg(long)]
    pub org: String,
    /// Workspace to join in an existing organization (default: its first).
    #[arg(long)]
    pub workspace: Option<String>,
    #[arg(long, default_value = "owner")]
    pub role: String,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new `keyid:base64key` entry for PLUGBOARD_ENCRYPTION_KEYS.
    Generate {
        /// Key id (default: k<today's date>).
        #[arg(long)]
        id: Option<String>,
    },
    /// Count stored secrets per key id.
    Status,
    /// Re-encrypt every stored secret with the first (newest) key.
    Rotate {
        #[arg(long)]
        batch_size: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Validate provider.json files (default: the configured folder).
    Validate { dir: Option<PathBuf> },
}

pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = storage::connect(settings).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store.backend().name());
    store.close().await;
    Ok(())
}

fn read_password_stdin() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

/// An input error as the command line names it (`--field: message`).
fn user_error(e: crate::error::AppError) -> anyhow::Error {
    match e {
        crate::error::AppError::Validation {
            field: Some(field),
            message,
        } => anyhow::anyhow!("--{field}: {message}"),
        other => anyhow::anyhow!("{other}"),
    }
}

pub async fn user_reset_password(
    settings: &Settings,
    args: &UserResetPassword,
) -> anyhow::Result<()> {
    validate_email("email", &args.email).map_err(user_error)?;
    let password = read_password_stdin()?;
    validate_password(&password, settings.auth.min_password_length).map_err(user_error)?;
    let store = storage::connect(settings).await?;
    store.migrate().await?;
    let result = crate::auth::reset::set_by_operator(
        &store,
        &args.email,
        &password,
        settings.auth.min_password_length,
    )
    .await;
    store.close().await;
    let user_id = result.map_err(user_error)?;
    println!(
        "password set for user {user_id} ({}); their sessions were signed out",
        args.email.trim()
    );
    Ok(())
}

pub async fn user_create(settings: &Settings, args: &UserCreate) -> anyhow::Result<()> {
    validate_email("email", &args.email).map_err(user_error)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.email.split('@').next().unwrap_or_default().to_owned());
    let name = validate_name("name", &name).map_err(user_error)?;
    let org = validate_name("org", &args.org).map_err(user_error)?;
    let role = parse_role("role", &args.role).map_err(user_error)?;
    let password = read_password_stdin()?;
    validate_password(&password, settings.auth.min_password_length).map_err(user_error)?;

    let store = storage::connect(settings).await?;
    store.migrate().await?;
    let result = create_user(&store, args, &name, &org, role.as_str(), password).await;
    store.close().await;
    let (user_id, workspace_id) = result?;
    println!(
        "created user {user_id} ({}) in workspace {workspace_id} as {role}",
        args.email.trim()
    );
    Ok(())
}

async fn create_user(
    store: &DynStore,
    args: &UserCreate,
    name: &str,
    org: &str,
    role: &str,
    password: String,
) -> anyhow::Result<(Uuid, WorkspaceId)> {
    let password_hash = password::hash(password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let existing_org = store.find_organization_by_name(org).await?;
    let organization_id = Uuid::now_v7();
    let new_workspace = WorkspaceId(Uuid::now_v7());
    let workspace_name = args.workspace.clone().unwrap_or_else(|| org.to_owned());
    let landing = match existing_org {
        None => {
            if role != "owner" {
                bail!("organization {org:?} does not exist; create it with --role owner");
            }
            Landing::NewOrganization {
                organization_id,
                organization_name: org,
                workspace_id: new_workspace,
                workspace_name: &workspace_name,
            }
        }
        Some(org_id) => {
            let ws = store
                .find_workspace_in_org(org_id, args.workspace.as_deref())
                .await?
                .with_context(|| format!("organization {org:?} has no such workspace"))?;
            Landing::Workspace {
                workspace_id: ws,
                role,
            }
        }
    };
    let workspace_id = match &landing {
        Landing::NewOrganization { workspace_id, .. } | Landing::Workspace { workspace_id, .. } => {
            *workspace_id
        }
        Landing::Invite { workspace_id, .. } => *workspace_id,
    };
    let user_id = Uuid::now_v7();
    let email = args.email.trim();
    let normalized = normalize_email(email);
    let user = NewUser {
        id: user_id,
        email,
        email_normalized: &normalized,
        name,
        password_hash: &password_hash,
        created_at: now(),
    };
    let audit =
        AuditEntry::new(Some(workspace_id), None, "user.create_cli").target("user", user_id);
    match store.create_account(&user, &landing, &audit).await? {
        CreateAccountOutcome::Created => Ok((user_id, workspace_id)),
        CreateAccountOutcome::EmailTaken => bail!("a user with email {email} already exists"),
        CreateAccountOutcome::InviteGone => bail!("invite no longer valid"),
    }
}

pub fn keys_generate(id: Option<&str>) -> anyhow::Result<()> {
    let id = id.map(str::to_owned).unwrap_or_else(vault::default_key_id);
    let entry = vault::generate_key_entry(&id)?;
    eprintln!(
        "Add this to PLUGBOARD_ENCRYPTION_KEYS. To rotate, put it first and keep the old keys after it:\n  \
         PLUGBOARD_ENCRYPTION_KEYS=<new>,<old…>"
    );
    println!("{entry}");
    Ok(())
}

/// Reads only: a status check must not migrate (or otherwise change) the
/// database it reports on.
pub async fn keys_status(settings: &Settings) -> anyhow::Result<()> {
    let (ring, _) = vault::load_key_ring(settings)?;
    let store = storage::connect(settings).await?;
    let pending = store.pending_migrations().await?;
    let counts = if pending == 0 {
        store.count_sealed_by_key().await
    } else {
        eprintln!(
            "note: the database has {pending} migrations not applied (`plugboard migrate` applies them); \
             reporting what it holds as it is"
        );
        // An empty database has nothing sealed; a half-migrated one may
        // lack the tables, which also means nothing sealed there.
        Ok(store.count_sealed_by_key().await.unwrap_or_default())
    };
    store.close().await;
    let counts = counts?;
    let configured = ring.key_ids();
    println!("primary key: {}", ring.primary_key_id());
    println!("{:<34} {:>10}  state", "key id", "secrets");
    for id in &configured {
        let n = counts.iter().find(|(k, _)| k == id).map_or(0, |(_, n)| *n);
        let state = if *id == ring.primary_key_id() {
            "primary"
        } else if n == 0 {
            "unused: can be retired"
        } else {
            "needs rotate"
        };
        println!("{id:<34} {n:>10}  {state}");
    }
    let mut missing = 0;
    for (id, n) in &counts {
        if !configured.contains(&id.as_str()) {
            missing += n;
            println!("{id:<34} {n:>10}  NOT CONFIGURED: these secrets can't be opened");
        }
    }
    if missing > 0 {
        bail!("{missing} secrets are sealed with keys that are not configured");
    }
    Ok(())
}

pub async fn keys_rotate(settings: &Settings, batch_size: Option<u32>) -> anyhow::Result<()> {
    let (ring, _) = vault::load_key_ring(settings)?;
    let store = storage::connect(settings).await?;
    store.migrate().await?;
    let batch_size = batch_size
        .unwrap_or(settings.vault.rotate_batch_size)
        .max(1);
    let report = rotate_all(store.as_ref(), &ring, batch_size, None, |batch| {
        eprintln!("batch: {} rotated, {} skipped", batch.rotated, batch.failed);
    })
    .await;
    store.close().await;
    let report = report?;
    println!(
        "rotated {} secrets to key {} in {} batches",
        report.rotated,
        ring.primary_key_id(),
        report.batches
    );
    if report.failed > 0 {
        bail!(
            "{} secrets could not be opened with the configured keys and were left as they are; \
             run `plugboard keys status`",
            report.failed
        );
    }
    Ok(())
}

/// Exit code 0 when valid; the report on stderr otherwise.
pub fn providers_validate(dir: &std::path::Path) -> anyhow::Result<()> {
    match ProviderRegistry::load(dir) {
        Ok(registry) => {
            println!("{} providers valid in {}", registry.len(), dir.display());
            for p in registry.iter() {
                println!("  {:<22} {} objects", p.meta.key, p.meta.objects.len());
            }
            Ok(())
        }
        Err(report) => bail!("{report}"),
    }
}

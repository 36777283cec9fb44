//! What every tab of an object page shares: which provider, object and
//! connection it is about, and the tab bar.

use serde::Deserialize;
use uuid::Uuid;

use super::{WHAT, provider};
use crate::app::AppState;
use crate::connections::service as connections;
use crate::connections::{Connection, Status};
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::providers::{ObjectMeta, Provider};
use crate::tenancy::Tenant;
use crate::web::pages::parse_path_id;

/// The tabs of an object page, in order: (path suffix, label). Each tab's
/// page lives in its own module; add it here to show it in the bar.
const TABS: &[(&str, &str)] = &[
    ("", "Rule"),
    ("/mapping", "Mapping"),
    ("/matching", "Initial matching"),
    ("/sync", "Sync controls"),
];

/// One link in the tab bar.
pub struct Tab {
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

/// The tab bar for `object` of `provider`, keeping the chosen connection.
pub fn tabs(provider: &str, object: &str, connection: Option<Uuid>, current: &str) -> Vec<Tab> {
    let query = connection.map_or_else(String::new, |id| format!("?connection={id}"));
    TABS.iter()
        .map(|(suffix, label)| Tab {
            href: format!("/integrations/{provider}/{object}{suffix}{query}"),
            label,
            current: *suffix == current,
        })
        .collect()
}

#[derive(Deserialize, Default)]
pub struct ObjectQuery {
    pub connection: Option<SingleLine>,
}

pub struct Target<'a> {
    pub provider: &'a Provider,
    pub object: &'a ObjectMeta,
    pub connection: Option<Connection>,
    pub connections: Vec<(Uuid, String)>,
}

pub async fn target<'a>(
    state: &'a AppState,
    tenant: &Tenant,
    key: &str,
    object: &str,
    connection: Option<Uuid>,
) -> AppResult<Target<'a>> {
    tenant.require_admin(WHAT)?;
    let p = provider(state, key)?;
    let o = p
        .object(object)
        .ok_or_else(|| AppError::not_found(format!("{key} has no object {object:?}")))?;
    let connection = match connection {
        // Another workspace's id is not found, like one that doesn't exist.
        Some(id) => Some(connections::resolve(state, tenant, key, Some(id)).await?),
        None => match connections::resolve(state, tenant, key, None).await {
            Ok(c) => Some(c),
            Err(AppError::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
    };
    let connections = state
        .store
        .list_connections(tenant.workspace_id)
        .await?
        .into_iter()
        .filter(|c| c.provider == key && connections::visible_to(c, tenant))
        .map(|c| {
            let label = format!(
                "{} · {}{}",
                if c.owner_user_id.is_none() {
                    "workspace"
                } else {
                    "yours"
                },
                c.environment,
                if c.status() == Status::Connected {
                    String::new()
                } else {
                    format!(" · {}", c.status().as_str())
                }
            );
            (c.id, label)
        })
        .collect();
    Ok(Target {
        provider: p,
        object: o,
        connection,
        connections,
    })
}

pub fn connection_param(raw: Option<&str>) -> AppResult<Option<Uuid>> {
    raw.filter(|r| !r.is_empty())
        .map(|r| parse_path_id(r, "connection"))
        .transpose()
}

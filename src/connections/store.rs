//! SQL for connections and OAuth states. Every change writes its sealed
//! tokens, its audit entry and its webhook event in the same transaction.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ACCESS_TOKEN, API_KEY, CLIENT_SECRET, Connection, ConnectionEvent, OWNER_KIND, REFRESH_TOKEN,
    Status,
};
use crate::audit::AuditEntry;
use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;
use crate::vault::store::SealedField;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OAuthStateRow {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub user_id: Uuid,
    pub provider: String,
    pub environment: String,
    pub ownership: String,
    pub redirect_uri: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// The outcome of a change that may also carry an event and audit entry.
pub struct Change<'a> {
    pub audit: Option<&'a AuditEntry>,
    pub event: Option<&'a ConnectionEvent>,
    /// A reconnect link the event points to, stored with the change.
    pub link: Option<&'a crate::connectlinks::store::NewConnectLink>,
}

impl<'a> Change<'a> {
    pub fn new(audit: Option<&'a AuditEntry>, event: Option<&'a ConnectionEvent>) -> Self {
        Change {
            audit,
            event,
            link: None,
        }
    }

    pub fn with_link(
        mut self,
        link: Option<&'a crate::connectlinks::store::NewConnectLink>,
    ) -> Self {
        self.link = link;
        self
    }
}

/// A failed refresh, as recorded on the row.
pub struct RefreshFailure<'a> {
    /// The lease holder, whose lease is released.
    pub owner: Uuid,
    pub error: &'a str,
    /// None: transient, the status stays.
    pub new_status: Option<Status>,
    pub at: OffsetDateTime,
}

/// Writes a row's new token state on a refresh.
pub struct RefreshedTokens<'a> {
    pub sealed: &'a [SealedField],
    /// The provider issued no new refresh token: keep the stored one.
    pub expires_at: Option<OffsetDateTime>,
    pub lifetime_secs: Option<i64>,
    pub granted_scopes: Option<&'a [String]>,
    pub at: OffsetDateTime,
}

#[async_trait::async_trait]
pub trait ConnectionStore {
    async fn get_connection(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
    ) -> sqlx::Result<Option<Connection>>;
    async fn find_connection(
        &self,
        workspace: WorkspaceId,
        provider: &str,
        environment: &str,
        tenant_key: &str,
        owner_key: &str,
    ) -> sqlx::Result<Option<Connection>>;
    async fn list_connections(&self, workspace: WorkspaceId) -> sqlx::Result<Vec<Connection>>;
    /// System lookup by id alone, for the deployment-wide service key.
    async fn find_connection_workspace(&self, id: Uuid) -> sqlx::Result<Option<WorkspaceId>>;
    /// Inserts or replaces the row (by id) with its tokens; stale token
    /// fields not in `sealed` are removed.
    async fn save_connection(
        &self,
        c: &Connection,
        sealed: &[SealedField],
        change: Change<'_>,
    ) -> sqlx::Result<()>;
    /// Stores refreshed tokens if nobody else did since `seen_version`.
    async fn save_refreshed(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        seen_version: i64,
        tokens: RefreshedTokens<'_>,
        change: Change<'_>,
    ) -> sqlx::Result<bool>;
    /// Takes the refresh lease if the token is still at `seen_version` and
    /// nobody else holds an unexpired lease.
    async fn try_lease_refresh(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        seen_version: i64,
        owner: Uuid,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> sqlx::Result<bool>;
    async fn release_refresh_lease(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        owner: Uuid,
    ) -> sqlx::Result<()>;
    async fn record_refresh_failure(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        failure: RefreshFailure<'_>,
        change: Change<'_>,
    ) -> sqlx::Result<()>;
    async fn set_connection_status(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        status: Status,
        error: Option<&str>,
        change: Change<'_>,
    ) -> sqlx::Result<bool>;
    /// Deletes the tokens and marks the connection NOT_CONNECTED.
    async fn disconnect_connection(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        revoke_error: Option<&str>,
        change: Change<'_>,
    ) -> sqlx::Result<bool>;
    async fn set_selected_accounts(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        account_ids: &[String],
        change: Change<'_>,
    ) -> sqlx::Result<bool>;
    /// The owner's consent for automations on their personal connection;
    /// only the owner's own row changes (false: not theirs or not found).
    async fn set_automations_allowed(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        owner: Uuid,
        allowed: bool,
        change: Change<'_>,
    ) -> sqlx::Result<bool>;
    async fn touch_connection_used(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
    /// System query for the keep-alive: refreshable connections not
    /// refreshed since `idle_before`, across workspaces.
    async fn keepalive_candidates(
        &self,
        idle_before: OffsetDateTime,
        limit: i64,
    ) -> sqlx::Result<Vec<(WorkspaceId, Uuid)>>;

    async fn insert_oauth_state(
        &self,
        row: &OAuthStateRow,
        verifier: Option<&SealedField>,
    ) -> sqlx::Result<()>;
    /// Removes the state (single use) and returns it with its sealed verifier.
    async fn take_oauth_state(
        &self,
        id: Uuid,
    ) -> sqlx::Result<Option<(OAuthStateRow, Option<String>)>>;
    async fn delete_expired_oauth_states(&self, now: OffsetDateTime) -> sqlx::Result<u64>;
}

macro_rules! connection_select {
    () => {
        "SELECT id, workspace_id, provider, environment, tenant_key, owner_user_id, owner_key, flow, status, \
         account_id, account_email, account_name, requested_scopes, granted_scopes, selected_account_ids, \
         header_values, client_id, has_refresh_token, access_expires_at, access_lifetime_secs, token_version, \
         refresh_failing_since, last_refreshed_at, last_used_at, last_sync_at, last_error, connected_by, \
         connected_at, created_at, updated_at, automations_allowed FROM connections "
    };
}

/// Audit entry and webhook event of a change, on the transaction.
macro_rules! record_change {
    ($tx:ident, $change:expr) => {
        if let Some(audit) = $change.audit {
            $crate::insert_audit!(&mut *$tx, audit)?;
        }
        if let Some(link) = $change.link {
            $crate::insert_connect_link!(&mut *$tx, link)?;
        }
        if let Some(event) = $change.event {
            $crate::enqueue_webhook_event!(&mut *$tx, event)?;
        }
    };
}

const TOKEN_FIELDS: [&str; 4] = [ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, API_KEY];

impl_for_backends! {
    impl ConnectionStore {
        async fn get_connection(&self, workspace: WorkspaceId, id: Uuid) -> sqlx::Result<Option<Connection>> {
            sqlx::query_as(concat!(connection_select!(), "WHERE workspace_id = $1 AND id = $2"))
                .bind(workspace)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
        }

        async fn find_connection(&self, workspace: WorkspaceId, provider: &str, environment: &str, tenant_key: &str, owner_key: &str) -> sqlx::Result<Option<Connection>> {
            sqlx::query_as(concat!(
                connection_select!(),
                "WHERE workspace_id = $1 AND provider = $2 AND environment = $3 AND tenant_key = $4 AND owner_key = $5"
            ))
            .bind(workspace)
            .bind(provider)
            .bind(environment)
            .bind(tenant_key)
            .bind(owner_key)
            .fetch_optional(&self.pool)
            .await
        }

        async fn list_connections(&self, workspace: WorkspaceId) -> sqlx::Result<Vec<Connection>> {
            sqlx::query_as(concat!(connection_select!(), "WHERE workspace_id = $1 ORDER BY provider, created_at, id"))
                .bind(workspace)
                .fetch_all(&self.pool)
                .await
        }

        async fn find_connection_workspace(&self, id: Uuid) -> sqlx::Result<Option<WorkspaceId>> {
            sqlx::query_scalar("SELECT workspace_id FROM connections WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
        }

        async fn save_connection(&self, c: &Connection, sealed: &[SealedField], change: Change<'_>) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO connections (id, workspace_id, provider, environment, tenant_key, owner_user_id, owner_key, \
                 flow, status, account_id, account_email, account_name, requested_scopes, granted_scopes, \
                 selected_account_ids, header_values, client_id, has_refresh_token, access_expires_at, \
                 access_lifetime_secs, token_version, refresh_failing_since, last_refreshed_at, last_used_at, \
                 last_sync_at, last_error, connected_by, connected_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
                 $21, $22, $23, $24, $25, $26, $27, $28, $29, $30) \
                 ON CONFLICT (id) DO UPDATE SET flow = excluded.flow, status = excluded.status, \
                 account_id = excluded.account_id, account_email = excluded.account_email, \
                 account_name = excluded.account_name, requested_scopes = excluded.requested_scopes, \
                 granted_scopes = excluded.granted_scopes, selected_account_ids = excluded.selected_account_ids, \
                 header_values = excluded.header_values, client_id = excluded.client_id, \
                 has_refresh_token = excluded.has_refresh_token, access_expires_at = excluded.access_expires_at, \
                 access_lifetime_secs = excluded.access_lifetime_secs, \
                 token_version = connections.token_version + 1, refresh_failing_since = NULL, \
                 refresh_lease_until = NULL, refresh_lease_owner = NULL, \
                 last_refreshed_at = excluded.last_refreshed_at, last_error = excluded.last_error, \
                 connected_by = excluded.connected_by, connected_at = excluded.connected_at, \
                 updated_at = excluded.updated_at \
                 WHERE connections.workspace_id = excluded.workspace_id",
            )
            .bind(c.id)
            .bind(c.workspace_id)
            .bind(&c.provider)
            .bind(&c.environment)
            .bind(&c.tenant_key)
            .bind(c.owner_user_id)
            .bind(&c.owner_key)
            .bind(&c.flow)
            .bind(&c.status)
            .bind(&c.account_id)
            .bind(&c.account_email)
            .bind(&c.account_name)
            .bind(&c.requested_scopes)
            .bind(&c.granted_scopes)
            .bind(&c.selected_account_ids)
            .bind(&c.header_values)
            .bind(&c.client_id)
            .bind(c.has_refresh_token)
            .bind(c.access_expires_at)
            .bind(c.access_lifetime_secs)
            .bind(c.token_version)
            .bind(c.refresh_failing_since)
            .bind(c.last_refreshed_at)
            .bind(c.last_used_at)
            .bind(c.last_sync_at)
            .bind(&c.last_error)
            .bind(c.connected_by)
            .bind(c.connected_at)
            .bind(c.created_at)
            .bind(c.updated_at)
            .execute(&mut *tx)
            .await?;
            for field in TOKEN_FIELDS {
                if !sealed.iter().any(|s| s.field == field) {
                    sqlx::query("DELETE FROM secrets WHERE workspace_id = $1 AND owner_kind = $2 AND owner_id = $3 AND field = $4")
                        .bind(c.workspace_id)
                        .bind(OWNER_KIND)
                        .bind(c.id)
                        .bind(field)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            crate::upsert_sealed!(tx, c.workspace_id, OWNER_KIND, c.id, sealed, c.updated_at)?;
            record_change!(tx, change);
            tx.commit().await
        }

        async fn save_refreshed(&self, workspace: WorkspaceId, id: Uuid, seen_version: i64, tokens: RefreshedTokens<'_>, change: Change<'_>) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let granted = tokens.granted_scopes.map(|g| sqlx::types::Json(g.to_vec()));
            let has_new_refresh = tokens.sealed.iter().any(|s| s.field == REFRESH_TOKEN);
            let updated = sqlx::query(
                "UPDATE connections SET token_version = token_version + 1, access_expires_at = $4, \
                 access_lifetime_secs = $5, granted_scopes = COALESCE($6, granted_scopes), \
                 has_refresh_token = (has_refresh_token OR $7), last_refreshed_at = $8, updated_at = $8, \
                 refresh_failing_since = NULL, last_error = NULL, refresh_lease_until = NULL, \
                 refresh_lease_owner = NULL, \
                 status = CASE WHEN status = 'ERROR' THEN 'CONNECTED' ELSE status END \
                 WHERE workspace_id = $1 AND id = $2 AND token_version = $3",
            )
            .bind(workspace)
            .bind(id)
            .bind(seen_version)
            .bind(tokens.expires_at)
            .bind(tokens.lifetime_secs)
            .bind(granted)
            .bind(has_new_refresh)
            .bind(tokens.at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            crate::upsert_sealed!(tx, workspace, OWNER_KIND, id, tokens.sealed, tokens.at)?;
            record_change!(tx, change);
            tx.commit().await?;
            Ok(true)
        }

        async fn try_lease_refresh(&self, workspace: WorkspaceId, id: Uuid, seen_version: i64, owner: Uuid, until: OffsetDateTime, now: OffsetDateTime) -> sqlx::Result<bool> {
            let leased = sqlx::query(
                // Only for the token version the caller saw: once someone else
                // has refreshed, the lease is refused and the caller reuses
                // their result instead of spending the rotated refresh token.
                "UPDATE connections SET refresh_lease_until = $4, refresh_lease_owner = $3 \
                 WHERE workspace_id = $1 AND id = $2 AND token_version = $6 \
                 AND (refresh_lease_until IS NULL OR refresh_lease_until < $5 OR refresh_lease_owner = $3)",
            )
            .bind(workspace)
            .bind(id)
            .bind(owner)
            .bind(until)
            .bind(now)
            .bind(seen_version)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(leased == 1)
        }

        async fn release_refresh_lease(&self, workspace: WorkspaceId, id: Uuid, owner: Uuid) -> sqlx::Result<()> {
            sqlx::query(
                "UPDATE connections SET refresh_lease_until = NULL, refresh_lease_owner = NULL \
                 WHERE workspace_id = $1 AND id = $2 AND refresh_lease_owner = $3",
            )
            .bind(workspace)
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map(|_| ())
        }

        async fn record_refresh_failure(&self, workspace: WorkspaceId, id: Uuid, failure: RefreshFailure<'_>, change: Change<'_>) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "UPDATE connections SET last_error = $4, refresh_failing_since = COALESCE(refresh_failing_since, $5), \
                 status = COALESCE($6, status), updated_at = $5, \
                 refresh_lease_until = CASE WHEN refresh_lease_owner = $3 THEN NULL ELSE refresh_lease_until END, \
                 refresh_lease_owner = CASE WHEN refresh_lease_owner = $3 THEN NULL ELSE refresh_lease_owner END \
                 WHERE workspace_id = $1 AND id = $2",
            )
            .bind(workspace)
            .bind(id)
            .bind(failure.owner)
            .bind(failure.error)
            .bind(failure.at)
            .bind(failure.new_status.map(Status::as_str))
            .execute(&mut *tx)
            .await?;
            record_change!(tx, change);
            tx.commit().await
        }

        async fn set_connection_status(&self, workspace: WorkspaceId, id: Uuid, status: Status, error: Option<&str>, change: Change<'_>) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE connections SET status = $3, last_error = COALESCE($4, last_error), updated_at = $5 \
                 WHERE workspace_id = $1 AND id = $2",
            )
            .bind(workspace)
            .bind(id)
            .bind(status.as_str())
            .bind(error)
            .bind(crate::storage::now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            record_change!(tx, change);
            tx.commit().await?;
            Ok(true)
        }

        async fn disconnect_connection(&self, workspace: WorkspaceId, id: Uuid, revoke_error: Option<&str>, change: Change<'_>) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query(
                // Consent ends with the grant: a reconnected account is asked again.
                "UPDATE connections SET status = 'NOT_CONNECTED', has_refresh_token = $3, access_expires_at = NULL, \
                 automations_allowed = false, \
                 token_version = token_version + 1, refresh_failing_since = NULL, refresh_lease_until = NULL, \
                 refresh_lease_owner = NULL, last_error = $4, updated_at = $5 \
                 WHERE workspace_id = $1 AND id = $2",
            )
            .bind(workspace)
            .bind(id)
            .bind(false)
            .bind(revoke_error)
            .bind(crate::storage::now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM secrets WHERE workspace_id = $1 AND owner_kind = $2 AND owner_id = $3")
                .bind(workspace)
                .bind(OWNER_KIND)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            record_change!(tx, change);
            tx.commit().await?;
            Ok(true)
        }

        async fn set_selected_accounts(&self, workspace: WorkspaceId, id: Uuid, account_ids: &[String], change: Change<'_>) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE connections SET selected_account_ids = $3, updated_at = $4 WHERE workspace_id = $1 AND id = $2",
            )
            .bind(workspace)
            .bind(id)
            .bind(sqlx::types::Json(account_ids))
            .bind(crate::storage::now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            record_change!(tx, change);
            tx.commit().await?;
            Ok(true)
        }

        async fn set_automations_allowed(&self, workspace: WorkspaceId, id: Uuid, owner: Uuid, allowed: bool, change: Change<'_>) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let at = crate::storage::now();
            let updated = sqlx::query(
                "UPDATE connections SET automations_allowed = $4, automations_changed_at = $5, updated_at = $5 \
                 WHERE workspace_id = $1 AND id = $2 AND owner_user_id = $3",
            )
            .bind(workspace)
            .bind(id)
            .bind(owner)
            .bind(allowed)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            record_change!(tx, change);
            tx.commit().await?;
            Ok(true)
        }

        async fn touch_connection_used(&self, workspace: WorkspaceId, id: Uuid, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query("UPDATE connections SET last_used_at = $3 WHERE workspace_id = $1 AND id = $2")
                .bind(workspace)
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await
                .map(|_| ())
        }

        async fn keepalive_candidates(&self, idle_before: OffsetDateTime, limit: i64) -> sqlx::Result<Vec<(WorkspaceId, Uuid)>> {
            sqlx::query_as(
                "SELECT workspace_id, id FROM connections WHERE status IN ('CONNECTED', 'ERROR') \
                 AND has_refresh_token AND COALESCE(last_refreshed_at, connected_at, created_at) < $1 \
                 ORDER BY COALESCE(last_refreshed_at, connected_at, created_at) LIMIT $2",
            )
            .bind(idle_before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
        }

        async fn insert_oauth_state(&self, row: &OAuthStateRow, verifier: Option<&SealedField>) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO oauth_states (id, workspace_id, user_id, provider, environment, ownership, redirect_uri, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(row.id)
            .bind(row.workspace_id)
            .bind(row.user_id)
            .bind(&row.provider)
            .bind(&row.environment)
            .bind(&row.ownership)
            .bind(&row.redirect_uri)
            .bind(row.created_at)
            .bind(row.expires_at)
            .execute(&mut *tx)
            .await?;
            if let Some(sealed) = verifier {
                crate::upsert_sealed!(tx, row.workspace_id, "oauth_state", row.id, std::iter::once(sealed), row.created_at)?;
            }
            tx.commit().await
        }

        async fn take_oauth_state(&self, id: Uuid) -> sqlx::Result<Option<(OAuthStateRow, Option<String>)>> {
            let mut tx = self.begin_write().await?;
            let row: Option<OAuthStateRow> = sqlx::query_as(
                "DELETE FROM oauth_states WHERE id = $1 RETURNING id, workspace_id, user_id, provider, environment, \
                 ownership, redirect_uri, created_at, expires_at",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let verifier: Option<String> = sqlx::query_scalar(
                "DELETE FROM secrets WHERE workspace_id = $1 AND owner_kind = 'oauth_state' AND owner_id = $2 RETURNING ciphertext",
            )
            .bind(row.workspace_id)
            .bind(row.id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some((row, verifier)))
        }

        async fn delete_expired_oauth_states(&self, now: OffsetDateTime) -> sqlx::Result<u64> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "DELETE FROM secrets WHERE owner_kind = 'oauth_state' AND owner_id IN \
                 (SELECT id FROM oauth_states WHERE expires_at <= $1)",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n)
        }
    }
}

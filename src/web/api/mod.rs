//! JSON API under `/api`.

mod auth;
pub mod connections;
mod entities;
mod integrations;
mod internal;
mod keys;
mod rules;
mod sync;
mod webhooks;
mod workspaces;

use axum::Router;
use axum::routing::{delete, get, patch, post, put};

use crate::app::AppState;

/// Server-to-server routes; their own, larger body limit (metric batches).
pub fn internal_routes(body_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/connection-tokens", get(internal::connection_tokens))
        .route("/metrics/write", post(internal::write_metrics))
        .route("/runs/callback", post(internal::run_callback))
        .route("/run-context", get(internal::run_context))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route(
            "/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .route("/workspaces/{workspace_id}", get(workspaces::show))
        .route(
            "/workspaces/{workspace_id}/switch",
            post(workspaces::switch),
        )
        .route(
            "/workspaces/{workspace_id}/members",
            get(workspaces::members).post(workspaces::add_member),
        )
        .route(
            "/workspaces/{workspace_id}/members/{user_id}",
            patch(workspaces::change_role).delete(workspaces::remove_member),
        )
        .route(
            "/workspaces/{workspace_id}/members/{user_id}/password-reset",
            post(workspaces::create_password_reset),
        )
        .route(
            "/workspaces/{workspace_id}/invites",
            get(workspaces::invites).post(workspaces::create_invite),
        )
        .route(
            "/workspaces/{workspace_id}/invites/{invite_id}",
            delete(workspaces::revoke_invite),
        )
        .route("/workspaces/{workspace_id}/audit", get(workspaces::audit))
        .route("/invites/{token}/accept", post(workspaces::accept_invite))
        .route("/capabilities", get(integrations::capabilities))
        .route("/integrations/providers", get(integrations::providers))
        .route("/integrations/{provider}", get(integrations::provider))
        .route(
            "/integrations/{provider}/catalog",
            get(integrations::catalog),
        )
        .route(
            "/integrations/{provider}/{object}/mapping/defaults",
            get(integrations::mapping_defaults),
        )
        .route(
            "/integrations/{provider}/{object}/mapping",
            get(entities::get_mapping).put(entities::put_mapping),
        )
        .route(
            "/integrations/{provider}/{object}/apply",
            post(entities::apply),
        )
        .route(
            "/integrations/{provider}/{object}/matching/suggestions",
            get(entities::suggestions),
        )
        .route(
            "/integrations/{provider}/{object}/matching/confirm",
            post(entities::confirm),
        )
        .route(
            "/projects",
            get(entities::list_projects).post(entities::create_project),
        )
        .route(
            "/projects/{id}",
            get(entities::show_project).patch(entities::update_project),
        )
        .route(
            "/projects/{id}/reset-field",
            post(entities::reset_project_field),
        )
        .route(
            "/people",
            get(entities::list_people).post(entities::create_person),
        )
        .route(
            "/people/{id}",
            get(entities::show_person).patch(entities::update_person),
        )
        .route(
            "/people/{id}/reset-field",
            post(entities::reset_person_field),
        )
        .route("/oauth/{provider}/start", get(connections::start))
        .route("/oauth/{provider}/callback", get(connections::callback))
        .route("/oauth/{provider}/accounts", get(connections::accounts))
        .route(
            "/integrations/{provider}/connect",
            post(connections::connect),
        )
        .route("/integrations/{provider}/test", get(connections::test))
        .route("/integrations/connections", get(connections::list))
        .route(
            "/integrations/connections/{id}/{action}",
            post(connections::admin_action),
        )
        .route(
            "/integrations/connections/{id}/automations",
            put(connections::set_automations),
        )
        .route("/data/select-account", post(connections::select_account))
        .route("/data/sync", post(sync::sync_data))
        .route("/integrations/health", get(sync::health))
        .route("/integrations/{provider}/jobs", get(sync::list))
        .route(
            "/integrations/{provider}/{object}/sync",
            post(sync::sync_object),
        )
        .route(
            "/integrations/{provider}/{object}/rules",
            get(rules::list).put(rules::put).delete(rules::delete),
        )
        .route("/jobs/{id}", get(sync::show))
        .route("/jobs/{id}/cancel", post(sync::cancel))
        .route("/jobs/{id}/retry", post(sync::retry))
        .route("/data/disconnect", post(connections::disconnect))
        .route(
            "/workspaces/{workspace_id}/webhook",
            get(webhooks::get)
                .put(webhooks::put)
                .delete(webhooks::delete),
        )
        .route(
            "/workspaces/{workspace_id}/webhook/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/workspaces/{workspace_id}/service-keys",
            get(keys::list).post(keys::create),
        )
        .route(
            "/workspaces/{workspace_id}/service-keys/{key_id}",
            delete(keys::revoke),
        )
}

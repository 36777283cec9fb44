//! JSON API under `/api`.

mod auth;
mod connect_links;
pub mod connections;
mod entities;
mod integrations;
mod internal;
mod keys;
pub mod metrics;
mod rules;
mod sync;
mod webhooks;
mod workspaces;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::web::openapi;

// Routes are registered only through `routes!` on an `OpenApiRouter`:
// each handler's `#[utoipa::path]` is both its route and its documentation
// (tests/openapi.rs fails on a plain axum route call here). One `routes!` per
// path: handlers in one call must share the path.

/// Server-to-server routes; their own, larger body limit (metric batches).
pub fn internal_routes(body_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(internal::connection_tokens))
        .routes(routes!(internal::write_metrics))
        .routes(routes!(internal::run_callback))
        .routes(routes!(internal::run_context))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::docs))
        .routes(routes!(auth::signup))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(workspaces::list, workspaces::create))
        .routes(routes!(workspaces::show))
        .routes(routes!(workspaces::switch))
        .routes(routes!(workspaces::members, workspaces::add_member))
        .routes(routes!(workspaces::change_role, workspaces::remove_member))
        .routes(routes!(workspaces::create_password_reset))
        .routes(routes!(workspaces::invites, workspaces::create_invite))
        .routes(routes!(workspaces::revoke_invite))
        .routes(routes!(workspaces::audit))
        .routes(routes!(workspaces::accept_invite))
        .routes(routes!(integrations::capabilities))
        .routes(routes!(integrations::providers))
        .routes(routes!(integrations::provider))
        .routes(routes!(integrations::catalog))
        .routes(routes!(integrations::mapping_defaults))
        .routes(routes!(entities::get_mapping, entities::put_mapping))
        .routes(routes!(entities::apply))
        .routes(routes!(entities::suggestions))
        .routes(routes!(entities::confirm))
        .routes(routes!(entities::list_projects, entities::create_project))
        .routes(routes!(entities::show_project, entities::update_project))
        .routes(routes!(entities::reset_project_field))
        .routes(routes!(entities::list_people, entities::create_person))
        .routes(routes!(entities::show_person, entities::update_person))
        .routes(routes!(entities::reset_person_field))
        .routes(routes!(connections::start))
        .routes(routes!(connections::callback))
        .routes(routes!(connections::accounts))
        .routes(routes!(connections::connect))
        .routes(routes!(connections::test))
        .routes(routes!(connections::list))
        .routes(routes!(connections::admin_action))
        .routes(routes!(connections::set_automations))
        .routes(routes!(connections::select_account))
        .routes(routes!(sync::sync_data))
        .routes(routes!(sync::health))
        .routes(routes!(sync::list))
        .routes(routes!(sync::sync_object))
        .routes(routes!(rules::list, rules::put, rules::delete))
        .routes(routes!(sync::show))
        .routes(routes!(sync::cancel))
        .routes(routes!(sync::retry))
        .routes(routes!(connections::disconnect))
        .routes(routes!(webhooks::get, webhooks::put, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::revoke))
        .routes(routes!(connect_links::list, connect_links::create))
        .routes(routes!(connect_links::revoke))
        .routes(routes!(metrics::catalog))
        .routes(routes!(metrics::run_query))
        .routes(routes!(metrics::kpis))
        .routes(routes!(metrics::revisions))
}

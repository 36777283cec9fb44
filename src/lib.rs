//! Plugboard: a self-hosted, multi-tenant integrations hub in one binary.

// Provider data, token responses, headers and database rows are untrusted:
// library code may not index, slice, unwrap or panic on them. (Tests may.)
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod background;
pub mod cli;
pub mod config;
pub mod connections;
pub mod connectlinks;
pub mod entities;
pub mod error;
pub mod input;
pub mod internal;
pub mod jobs;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod providers;
pub mod retention;
pub mod rules;
pub mod sandbox;
pub mod servicekeys;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod tenancy;
#[cfg(test)]
mod testing;
pub mod vault;
pub mod web;
pub mod webhooks;

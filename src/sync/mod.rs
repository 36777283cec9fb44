//! The sync engine. This session lands its reading layer: the
//! metadata-driven page reader ([`fetch`]) and the retrying provider client
//! ([`retry`]). Jobs, workers and the record store build on them.

pub mod fetch;
pub mod retry;

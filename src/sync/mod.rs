//! The sync engine, built bottom-up: the metadata-driven page reader
//! ([`fetch`]), the retrying provider client ([`retry`]), the records
//! store ([`records`]) and job leases with fenced, checkpointed page
//! commits ([`leases`]). The worker loop and the sync API come next.

pub mod fetch;
pub mod leases;
pub mod records;
pub mod retry;
pub mod service;
pub mod worker;

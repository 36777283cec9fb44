//! The sync engine, built bottom-up: the metadata-driven page reader
//! ([`fetch`]), the retrying provider client ([`retry`]) and the records
//! store ([`records`]). The job queue and workers come next.

pub mod fetch;
pub mod records;
pub mod retry;

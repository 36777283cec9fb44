//! The sync engine: the metadata-driven page reader ([`fetch`]), the
//! retrying provider client ([`retry`]), rate budgets and quota headers
//! ([`limits`]), delta bounds ([`delta`]), the records store
//! ([`records`]), job leases with fenced, checkpointed page commits
//! ([`leases`]), the workers ([`worker`]), the sync API ([`service`]) and
//! the post-restore resync ([`resync`]).

pub mod delta;
pub mod fetch;
pub mod handoff;
pub mod leases;
pub mod limits;
pub mod records;
pub mod resync;
pub mod retry;
pub mod service;
pub mod worker;

//! Timestamped batches for `/metrics/batch` (and later remote_write): the
//! sample store the drain task fills from the attribution grid, and the
//! encoders a request runs over a consumer's lease.

use std::sync::{Arc, Mutex};

pub mod domains;
pub mod encode;
pub mod store;

pub use store::{Family, SeriesKey, Store};

/// The store shared by the drain task (writer) and the HTTP handlers.
pub type SharedStore = Arc<Mutex<Store>>;

/// Locks the store; a panic while holding it (a bug) leaves the data usable.
pub fn lock(store: &SharedStore) -> std::sync::MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

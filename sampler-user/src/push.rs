//! Push: remote_write 1.0 with retries, backoff and a durable queue.
//! The drain task appends every batch point (the same series as
//! `/metrics/batch`) to the queue's inbox; a flusher commits it every
//! `--fsync-interval`; the sender posts committed samples every
//! `--push-interval` and removes what the receiver acknowledged.

pub mod proto;
pub mod queue;

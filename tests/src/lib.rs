//! Privileged end-to-end tests; see `tests/`.

//! Podman as the tests run it on these hosts: runc (podman's default crun
//! refuses hybrid-cgroup hosts) and a containers.conf with
//! `default_ulimits = []` (this sandbox's hard limits are below podman's
//! default ulimits), and the image `cargo xtask test` builds.

use std::process::Command;

/// A containers.conf of the test's own; `podman` commands read it.
pub struct Podman {
    conf: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let conf = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            conf.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n",
        )
        .expect("containers.conf");
        Podman { conf }
    }

    /// A `podman` command with that configuration.
    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.conf.path().join("containers.conf"));
        c
    }

    /// A directory that lives as long as this (for a socket, say).
    pub fn dir(&self) -> &std::path::Path {
        self.conf.path()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}

/// The image under test (`ERGON_IMAGE`, which `cargo xtask test` builds
/// with `cargo xtask image`).
pub fn image() -> String {
    std::env::var("ERGON_IMAGE").unwrap_or_else(|_| {
        panic!("ERGON_IMAGE is not set: run the tests with `cargo xtask test`, which builds the image (`cargo xtask image`) and names it")
    })
}

//! Fixture trees in `testdata/` for the unit tests (sysfs/procfs layouts).

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::sysroot::SysRoot;

/// `testdata/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata")).join(name)
}

/// A writable copy of `testdata/<name>` in a temp dir, and its roots.
pub fn scratch(name: &str) -> (tempfile::TempDir, SysRoot) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture(name), dir.path());
    let root = SysRoot::under(dir.path());
    (dir, root)
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

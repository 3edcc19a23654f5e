use std::path::Path;

use anyhow::Result;

pub fn overhead(_bin: &Path, _seconds: u64, _out: Option<&Path>) -> Result<()> {
    anyhow::bail!("not yet")
}

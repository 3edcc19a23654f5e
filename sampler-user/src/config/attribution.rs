//! Settings of the split by cause ([`crate::attribution::cause`]):
//! `--idle-energy` and `--package-idle-watts`, in the file as
//!
//! ```toml
//! idle_energy = "share"
//! package_idle_watts = 25.0             # every package
//! # or per package id:
//! package_idle_watts = { 0 = 25.0, 1 = 24.5 }
//! ```

use std::collections::BTreeMap;

use clap::Args;
use serde::Deserialize;

use super::{in_range, invalid, ConfigError, FileConfig};
use crate::attribution::{Cause, IdleEnergy, IdleWatts};

#[derive(Args, Clone, Debug, Default)]
pub struct AttributionArgs {
    /// Where a package's idle (static) energy goes: separate (the idle
    /// bucket: cgroups carry what they caused) or share (the cgroups by
    /// on-CPU time, for chargeback) [default: separate].
    #[arg(long, env = "ERGON_IDLE_ENERGY", value_enum)]
    pub idle_energy: Option<IdleEnergy>,

    /// Idle power of the packages instead of learning it: `W` for every
    /// package or `PACKAGE=W` for one, repeated or comma-separated, e.g.
    /// `0=25,1=24.5` [default: learned].
    #[arg(long, env = "ERGON_PACKAGE_IDLE_WATTS", value_delimiter = ',')]
    pub package_idle_watts: Vec<String>,
}

/// `package_idle_watts` in the file: one number, or a table by package id.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum FileIdleWatts {
    All(f64),
    Packages(BTreeMap<String, f64>),
}

const FIX: &str = "give watts from 0 to 100000, for every package (`--package-idle-watts 25`) or per package id (`--package-idle-watts 0=25,1=24.5`; in the file `package_idle_watts = { 0 = 25.0 }`)";

/// NaN and infinities lie outside the range too.
fn watts(w: f64) -> Result<f64, ConfigError> {
    in_range("package_idle_watts", w, 0.0..=100_000.0, " W", FIX)
}

fn package(id: &str) -> Result<u32, ConfigError> {
    id.trim().parse().map_err(|_| {
        invalid(
            "package_idle_watts",
            id.to_string(),
            "is not a package id (the number in /sys/devices/system/cpu/cpuN/topology/physical_package_id)",
            FIX,
        )
    })
}

impl AttributionArgs {
    /// Flag (or `ERGON_*`), else the file, else the defaults.
    pub fn settings(&self, file: &FileConfig) -> Result<Cause, ConfigError> {
        let mut idle_watts = IdleWatts::default();
        if !self.package_idle_watts.is_empty() {
            for item in &self.package_idle_watts {
                match item.split_once('=') {
                    Some((id, w)) => {
                        let w = parse_watts(w)?;
                        idle_watts.packages.insert(package(id)?, watts(w)?);
                    }
                    None => idle_watts.all = Some(watts(parse_watts(item)?)?),
                }
            }
        } else {
            match &file.package_idle_watts {
                Some(FileIdleWatts::All(w)) => idle_watts.all = Some(watts(*w)?),
                Some(FileIdleWatts::Packages(t)) => {
                    for (id, &w) in t {
                        idle_watts.packages.insert(package(id)?, watts(w)?);
                    }
                }
                None => {}
            }
        }
        Ok(Cause {
            idle_energy: self.idle_energy.or(file.idle_energy).unwrap_or_default(),
            idle_watts,
        })
    }
}

fn parse_watts(s: &str) -> Result<f64, ConfigError> {
    s.trim().parse().map_err(|_| {
        invalid(
            "package_idle_watts",
            s.to_string(),
            "is not a number of watts",
            FIX,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> AttributionArgs {
        AttributionArgs {
            idle_energy: None,
            package_idle_watts: v.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn watts_for_all_and_per_package() {
        let c = args(&["20", "1=30.5"])
            .settings(&FileConfig::default())
            .expect("valid");
        assert_eq!(c.idle_watts.of(0), Some(20.0));
        assert_eq!(c.idle_watts.of(1), Some(30.5));
        assert_eq!(c.idle_energy, IdleEnergy::Separate);
        let none = args(&[]).settings(&FileConfig::default()).expect("valid");
        assert_eq!(none.idle_watts, IdleWatts::default(), "learned by default");
    }

    #[test]
    fn bad_watts_and_ids_name_the_setting_and_the_fix() {
        for bad in ["-1", "x=3", "0=lots", "nan"] {
            let e = args(&[bad])
                .settings(&FileConfig::default())
                .expect_err(bad)
                .to_string();
            assert!(
                e.contains("package_idle_watts") && e.contains("--package-idle-watts 25"),
                "{bad}: {e}"
            );
        }
    }
}

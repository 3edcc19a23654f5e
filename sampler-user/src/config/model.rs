//! Settings of the `model` source: per-CPU idle and full-load watts from
//! `--model-idle-watts`/`--model-max-watts`, or from the config file's
//! `[model]` table, which may also give other watts to some CPUs:
//!
//! ```toml
//! [model]
//! idle_watts = 1.2
//! max_watts = 6.5
//! [[model.cpus]]          # e.g. efficiency cores
//! cpus = "8-15"
//! idle_watts = 0.4
//! max_watts = 2.0
//! ```

use std::collections::HashMap;

use clap::Args;
use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::{
    source::model::{CpuModel, Model},
    topology::parse_cpulist,
};

#[derive(Args, Clone, Debug, Default)]
pub struct ModelArgs {
    /// Watts one CPU draws when idle, for `--source model` (an estimate for
    /// machines without energy counters) [default: 0.74].
    #[arg(long, env = "ERGON_MODEL_IDLE_WATTS")]
    pub model_idle_watts: Option<f64>,

    /// Watts one CPU draws when fully busy, for `--source model` [default: 3.5].
    #[arg(long, env = "ERGON_MODEL_MAX_WATTS")]
    pub model_max_watts: Option<f64>,
}

/// The `[model]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileModel {
    pub idle_watts: Option<f64>,
    pub max_watts: Option<f64>,
    pub cpus: Vec<FileCpus>,
}

/// A `[[model.cpus]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCpus {
    /// A CPU list as in sysfs: `0-3,8`.
    pub cpus: String,
    pub idle_watts: f64,
    pub max_watts: f64,
}

const FIX: &str =
    "declare watts per CPU with 0 <= idle <= max <= 1000, e.g. --model-idle-watts 1.5 --model-max-watts 6";

fn check(field: &'static str, m: CpuModel) -> Result<CpuModel, ConfigError> {
    let ok = |w: f64| w.is_finite() && (0.0..=1000.0).contains(&w);
    if !ok(m.idle_watts) || !ok(m.max_watts) || m.idle_watts > m.max_watts {
        return Err(invalid(
            field,
            format!("idle {} W, max {} W", m.idle_watts, m.max_watts),
            "is not a linear model with 0 <= idle <= max <= 1000 W",
            FIX,
        ));
    }
    Ok(m)
}

impl ModelArgs {
    pub fn settings(&self, file: Option<&FileModel>) -> Result<Model, ConfigError> {
        let mut model = Model::default();
        let idle = self.model_idle_watts.or(file.and_then(|f| f.idle_watts));
        let max = self.model_max_watts.or(file.and_then(|f| f.max_watts));
        model.declared = idle.is_some() || max.is_some();
        model.default = check(
            "model_idle_watts/model_max_watts",
            CpuModel {
                idle_watts: idle.unwrap_or(model.default.idle_watts),
                max_watts: max.unwrap_or(model.default.max_watts),
            },
        )?;
        let mut cpus = HashMap::new();
        for entry in file.map(|f| f.cpus.as_slice()).unwrap_or_default() {
            let list = parse_cpulist(&entry.cpus).map_err(|e| {
                invalid(
                    "model.cpus.cpus",
                    entry.cpus.clone(),
                    &e.to_string(),
                    "give a CPU list as in sysfs, e.g. cpus = \"0-3,8\"",
                )
            })?;
            let m = check(
                "model.cpus",
                CpuModel {
                    idle_watts: entry.idle_watts,
                    max_watts: entry.max_watts,
                },
            )?;
            for cpu in list {
                cpus.insert(cpu, m);
            }
        }
        model.declared |= !cpus.is_empty();
        model.cpus = cpus;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_cpus_get_their_own_watts() {
        let file: FileModel = toml::from_str(
            "idle_watts = 1.0\nmax_watts = 5.0\n[[cpus]]\ncpus = \"2-3\"\nidle_watts = 0.5\nmax_watts = 2.0\n",
        )
        .expect("toml");
        let args = ModelArgs {
            model_idle_watts: None,
            model_max_watts: Some(8.0),
        };
        let m = args.settings(Some(&file)).expect("valid");
        assert!(m.declared);
        assert_eq!(
            m.of(0),
            CpuModel {
                idle_watts: 1.0,
                max_watts: 8.0
            }
        );
        assert_eq!(m.of(3).max_watts, 2.0);
        assert!(
            !ModelArgs::default()
                .settings(None)
                .expect("defaults")
                .declared
        );
    }

    #[test]
    fn a_model_that_is_not_linear_is_refused_with_the_fix() {
        let args = ModelArgs {
            model_idle_watts: Some(9.0),
            model_max_watts: Some(3.0),
        };
        let e = args.settings(None).expect_err("idle > max").to_string();
        assert!(
            e.contains("idle 9 W, max 3 W") && e.contains("--model-idle-watts"),
            "{e}"
        );
        let file: FileModel =
            toml::from_str("[[cpus]]\ncpus = \"x\"\nidle_watts = 1\nmax_watts = 2\n")
                .expect("toml");
        let e = ModelArgs::default()
            .settings(Some(&file))
            .expect_err("bad list")
            .to_string();
        assert!(e.contains("model.cpus.cpus") && e.contains("0-3,8"), "{e}");
        let e = ModelArgs {
            model_idle_watts: Some(f64::NAN),
            model_max_watts: None,
        }
        .settings(None)
        .expect_err("nan")
        .to_string();
        assert!(e.contains("linear model"), "{e}");
    }
}

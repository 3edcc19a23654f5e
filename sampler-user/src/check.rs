use std::process::ExitCode; use crate::config::Settings; pub fn run(_s: &Settings) -> ExitCode { ExitCode::FAILURE }

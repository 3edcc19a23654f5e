//! Basic or bearer authentication for every endpoint (`/health` may be left
//! open with `--health-no-auth`). Secrets are compared in constant time.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::config::Auth;

#[derive(Clone, Debug)]
pub struct AuthState {
    pub auth: Arc<Auth>,
    pub health_open: bool,
}

/// Whether the `Authorization` header value satisfies `auth`.
pub fn allows(auth: &Auth, header: Option<&str>) -> bool {
    let Some(h) = header else { return false };
    let (scheme, cred) = h.trim().split_once(' ').unwrap_or((h, ""));
    match auth {
        Auth::Basic { username, password } => {
            if !scheme.eq_ignore_ascii_case("basic") {
                return false;
            }
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(cred.trim()) else {
                return false;
            };
            let expected = format!("{username}:{password}");
            bool::from(raw.as_slice().ct_eq(expected.as_bytes()))
        }
        Auth::Bearer { token } => {
            scheme.eq_ignore_ascii_case("bearer")
                && bool::from(cred.trim().as_bytes().ct_eq(token.as_bytes()))
        }
    }
}

pub async fn require(State(s): State<AuthState>, req: Request, next: Next) -> Response {
    if s.health_open && req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let h = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if allows(&s.auth, h) {
        return next.run(req).await;
    }
    let (challenge, what) = match &*s.auth {
        Auth::Basic { .. } => ("Basic realm=\"ergon\"", "basic auth (user and password)"),
        Auth::Bearer { .. } => ("Bearer realm=\"ergon\"", "a bearer token"),
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        format!("unauthorized: this endpoint requires {what}; configure the scraper's credentials (Prometheus: basic_auth or authorization in the scrape config)\n"),
    )
        .into_response()
}

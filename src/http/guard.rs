//! Who may call, before anything else runs: the `Host` check on every route, and cross-site
//! protection on every state-changing request. This is what keeps a web page the user happens to
//! visit from reaching the queue, directly (a cross-site POST) or after DNS rebinding (a page of
//! `evil.example` whose name now resolves to 127.0.0.1).
//!
//! - **Host**: it must name this server: `localhost`, `127.0.0.1` or `[::1]` with the bound port,
//!   the bound address itself (any IP address of the machine when bound to `0.0.0.0` or `[::]`:
//!   an address cannot be rebound), or an entry of `allowed_hosts` (`lab.example.org`, any port;
//!   `lab.example.org:8443`; `*.lab.example.org`). Anything else is `421`. The two probes
//!   `/api/health/live` and `/api/health/ready` hold no data and are exempt, so a prober that
//!   sends an IP address (Kubernetes, a load balancer) keeps working.
//! - **Cross-site** (after Go's `net/http.CrossOriginProtection`): a POST, PUT, PATCH or DELETE, and
//!   the WebSocket upgrade, is refused with `403` when `Sec-Fetch-Site` says `cross-site` or
//!   `same-site`, or when an `Origin` is present that is neither one of this server's own origins
//!   (a host the Host check accepts) nor listed in `allowed_origins`. Requests with neither header
//!   (curl, scripts, the CLI) pass, and still need the token when one is set.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::config::HostRule;
use crate::config::hosts::split_host;
use crate::error_code::ErrorCode;

/// Paths that answer without the Host check.
const PROBES: [&str; 2] = ["/api/health/live", "/api/health/ready"];

/// The address a name in brackets or plain form stands for, if it is one.
fn ip_of(name: &str) -> Option<IpAddr> {
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The Host check and the origin rules of one server.
#[derive(Clone, Debug)]
pub struct Guard {
    bind: SocketAddr,
    allowed_hosts: Vec<HostRule>,
    /// Exact origins, e.g. `https://lab.example.org`.
    allowed_origins: Vec<String>,
}

impl Guard {
    pub fn new(
        bind: SocketAddr,
        allowed_hosts: Vec<HostRule>,
        allowed_origins: Vec<String>,
    ) -> Self {
        Guard {
            bind,
            allowed_hosts,
            allowed_origins: allowed_origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `host` (a Host header or an origin's authority) names this server. `default_port`
    /// applies when it has none (80 for http).
    pub fn host_allowed(&self, host: &str, default_port: u16) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let port = port.unwrap_or(default_port);
        if self.allowed_hosts.iter().any(|r| r.matches(&name, port)) {
            return true;
        }
        if port != self.bind.port() {
            return false;
        }
        if matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]") {
            return true;
        }
        match ip_of(&name) {
            Some(ip) => ip == self.bind.ip() || self.bind.ip().is_unspecified(),
            None => false,
        }
    }

    /// Whether a browser's `Origin` is this server's own page or a trusted one.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        let (default_port, authority) = if let Some(a) = origin.strip_prefix("http://") {
            (80, a)
        } else if let Some(a) = origin.strip_prefix("https://") {
            (443, a)
        } else {
            return false; // "null", file:, extensions
        };
        !authority.contains('/') && self.host_allowed(authority, default_port)
    }

    /// The refusal of a request, if it is refused.
    fn check(&self, req: &Request) -> Result<(), ApiError> {
        let path = req.uri().path();
        if !PROBES.contains(&path) {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| req.uri().authority().map(|a| a.to_string()));
            match host {
                Some(h) if self.host_allowed(&h, 80) => {}
                Some(h) => {
                    return Err(ApiError::new(
                        StatusCode::MISDIRECTED_REQUEST,
                        ErrorCode::HOST_NOT_ALLOWED,
                        format!(
                            "Host {h:?} does not name this spheroseg; if it is reached by that name, add it to allowed_hosts in spheroseg.toml (or SPHEROSEG_ALLOWED_HOSTS)"
                        ),
                    ));
                }
                None => {
                    return Err(ApiError::new(
                        StatusCode::MISDIRECTED_REQUEST,
                        ErrorCode::HOST_NOT_ALLOWED,
                        "the request has no Host header",
                    ));
                }
            }
        }
        if checks_origin(req.method(), path) {
            self.same_origin(req)?;
        }
        Ok(())
    }

    fn same_origin(&self, req: &Request) -> Result<(), ApiError> {
        let h = req.headers();
        let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let trusted = origin.is_some_and(|o| self.origin_allowed(o));
        let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if let Some(site @ ("cross-site" | "same-site")) = site
            && !trusted
        {
            return Err(refused(&format!(
                "the browser marked this request {site} (Sec-Fetch-Site); only this server's own page may change the queue"
            )));
        }
        if let Some(o) = origin
            && !trusted
        {
            return Err(refused(&format!(
                "requests from the page at {o:?} may not change the queue; if that page is yours, add its origin to allowed_origins in spheroseg.toml"
            )));
        }
        Ok(())
    }
}

/// Whether a request of this method to this path gets the cross-site check: one that changes
/// state, and the WebSocket upgrade.
fn checks_origin(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || path == "/ws"
}

/// Adds the guard's refusals to every operation of the OpenAPI document, by the rules `check`
/// applies: `421` on every path but the probes, `403` where the cross-site check runs.
pub(super) fn document(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::ToSchema;
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let refusal = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name(super::error::Body::name()))),
            )
            .build()
    };
    for (path, item) in &mut api.paths.paths {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            let responses = &mut operation.responses.responses;
            if !PROBES.contains(&path.as_str()) {
                responses.insert(
                    "421".into(),
                    refusal("the Host header does not name this server").into(),
                );
            }
            if checks_origin(&method, path) {
                responses.insert(
                    "403".into(),
                    refusal(
                        "a cross-site request from a browser, or an Origin that is not allowed",
                    )
                    .into(),
                );
            }
        }
    }
}

fn refused(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::CROSS_SITE_REQUEST,
        message,
    )
}

/// The middleware: refuses before any handler, token check or body read.
pub(super) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.guard.check(&req) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::debug!(path = %req.uri().path(), code = %e.code, "request refused");
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(bind: &str, hosts: &[&str], origins: &[&str]) -> Guard {
        Guard::new(
            bind.parse().expect("addr"),
            hosts
                .iter()
                .map(|h| HostRule::parse(h).expect("rule"))
                .collect(),
            origins.iter().map(|o| (*o).to_owned()).collect(),
        )
    }

    #[test]
    fn loopback_names_with_the_bound_port_pass() {
        let g = guard("127.0.0.1:5001", &[], &[]);
        for ok in [
            "127.0.0.1:5001",
            "localhost:5001",
            "LOCALHOST:5001",
            "[::1]:5001",
        ] {
            assert!(g.host_allowed(ok, 80), "{ok}");
        }
        for bad in [
            "evil.example:5001",
            "localhost:5002",
            "localhost",
            "127.0.0.2:5001",
            "10.0.0.5:5001",
            "localhost.evil.example:5001",
            "",
            "[::1",
        ] {
            assert!(!g.host_allowed(bad, 80), "{bad}");
        }
    }

    #[test]
    fn an_unspecified_bind_takes_any_address_but_no_foreign_name() {
        let g = guard("0.0.0.0:5001", &[], &[]);
        assert!(g.host_allowed("10.1.2.3:5001", 80));
        assert!(g.host_allowed("[fe80::1]:5001", 80));
        assert!(!g.host_allowed("lab-server:5001", 80));
        let g = guard("10.1.2.3:80", &[], &[]);
        assert!(g.host_allowed("10.1.2.3", 80), "port 80 is the default");
        assert!(!g.host_allowed("10.1.2.4", 80));
    }

    #[test]
    fn allowed_hosts_take_names_ports_and_wildcards() {
        let g = guard(
            "127.0.0.1:5001",
            &["lab-server", "proxy.example.org:8443", "*.lab.example.org"],
            &[],
        );
        assert!(g.host_allowed("lab-server:5001", 80));
        assert!(g.host_allowed("Lab-Server.", 80), "any port, trailing dot");
        assert!(g.host_allowed("proxy.example.org:8443", 80));
        assert!(!g.host_allowed("proxy.example.org:443", 80));
        assert!(g.host_allowed("a.lab.example.org", 443));
        assert!(
            !g.host_allowed("lab.example.org", 443),
            "the wildcard needs a label"
        );
        assert!(!g.host_allowed("evillab.example.org", 443));
        assert!(HostRule::parse("http://x/").is_err());
        assert!(HostRule::parse("a:b").is_err());
    }

    #[test]
    fn origins_are_own_names_or_listed() {
        let g = guard(
            "127.0.0.1:5001",
            &["lab-server"],
            &["https://portal.example.org"],
        );
        for ok in [
            "http://127.0.0.1:5001",
            "http://localhost:5001",
            "http://lab-server",
            "https://lab-server",
            "https://portal.example.org",
            "https://PORTAL.example.org/",
        ] {
            assert!(g.origin_allowed(ok), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:5002",
            "null",
            "file://",
            "chrome-extension://abc",
            "http://127.0.0.1:5001/x",
        ] {
            assert!(!g.origin_allowed(bad), "{bad}");
        }
    }
}

//! Host names as `allowed_hosts` names them and as a `Host` header or an origin carries them:
//! parsed once by validation, matched by the HTTP guard (`http/guard.rs`). Names are compared in
//! lowercase and without a trailing dot; an IPv6 address keeps its brackets.

/// One `allowed_hosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRule {
    /// As written (shown by `config show`).
    raw: String,
    /// Lowercase name; with `wildcard`, the suffix after `*.`.
    name: String,
    wildcard: bool,
    /// `None`: any port.
    port: Option<u16>,
}

impl HostRule {
    /// Parses `name`, `name:port`, `*.suffix` or `[v6]:port`.
    pub fn parse(written: &str) -> Result<HostRule, String> {
        let raw = written.trim();
        let (name, port) = split_host(raw)
            .ok_or_else(|| format!("{raw:?} is not a host name, host:port or *.domain"))?;
        let (name, wildcard) = match name.strip_prefix("*.") {
            Some(rest) => (rest.to_owned(), true),
            None => (name, false),
        };
        if name.is_empty() || name.contains('*') || name.contains('/') {
            return Err(format!("{raw:?} is not a host name, host:port or *.domain"));
        }
        Ok(HostRule {
            raw: written.to_owned(),
            name,
            wildcard,
            port,
        })
    }

    /// Whether it takes `name` (lowercase, as [`split_host`] gives it) on `port`.
    pub(crate) fn matches(&self, name: &str, port: u16) -> bool {
        let name_ok = if self.wildcard {
            name.strip_suffix(self.name.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1)
        } else {
            name == self.name
        };
        name_ok && self.port.is_none_or(|p| p == port)
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into a lowercase name, brackets kept, and its port.
pub(crate) fn split_host(raw: &str) -> Option<(String, Option<u16>)> {
    let raw = raw.to_ascii_lowercase();
    let (name, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let rest = &raw[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if rest.is_empty() => None,
            None => return None,
        };
        (raw[..=end].to_owned(), port)
    } else {
        match raw.rsplit_once(':') {
            Some((n, p)) => (n.to_owned(), Some(p.parse().ok()?)),
            None => (raw.clone(), None),
        }
    };
    let name = name.trim_end_matches('.').to_owned();
    (!name.is_empty()).then_some((name, port))
}

impl serde::Serialize for HostRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

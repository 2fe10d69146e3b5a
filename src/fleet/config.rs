//! `FleetConfig`: where the fleet's Redis is, the key prefix, and the time budget per round trip.

use crate::error::{Error, Result};
use std::fmt;
use std::time::Duration;

/// Longest timeout or retry delay accepted: an hour.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// URL schemes the Redis client accepts that we support: TCP, TLS (rustls), Unix sockets.
const SCHEMES: [&str; 4] = ["redis", "rediss", "unix", "redis+unix"];

/// Settings of the Redis store that a fleet of processes shares (feature `redis`).
///
/// The URL follows the `redis` crate's conventions: `redis://[user][:password@]host[:port][/db]`,
/// `rediss://` for TLS (rustls, the platform's root certificates unless
/// [`ca_certificate_pem`](FleetConfig::ca_certificate_pem) names the CA), `unix:///path/to/socket`.
/// `Debug` shows the URL with its password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetConfig {
    /// The Redis URL, password included. No default.
    pub url: String,
    /// Prefix of every key this crate writes, so that several fleets can share one Redis. The
    /// crate writes it as a hash tag, `{prefix}:win:...`, `{prefix}:cool:region:...`, so that a
    /// fleet's keys share one slot of a Redis Cluster; it must not contain `{` or `}`. No default.
    pub prefix: String,
    /// Time allowed for one Redis round trip on a call's hot path, connecting included; past
    /// it the call goes on with the local limiter. Default is 50 ms.
    pub timeout: Duration,
    /// How long to leave Redis alone after it failed before trying it again; meanwhile calls use
    /// the local limiter without waiting. Default is 1 s.
    pub retry_after: Duration,
    /// The CA certificate(s), PEM, that a `rediss://` server's certificate must chain to,
    /// instead of the platform's roots (a private CA). Default is none: the platform's roots.
    pub ca_pem: Option<String>,
}

impl FleetConfig {
    /// Returns settings for the Redis at `url`, with keys under `prefix`, and default timings.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        FleetConfig {
            url: url.into(),
            prefix: prefix.into(),
            timeout: Duration::from_millis(50),
            retry_after: Duration::from_secs(1),
            ca_pem: None,
        }
    }

    /// Trusts this CA (PEM) for a `rediss://` server instead of the platform's roots.
    pub fn ca_certificate_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Sets the time allowed for one Redis round trip.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long to wait after a Redis failure before trying Redis again.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Checks every setting; the error names the rejected one (`fleet.url`, `fleet.prefix`,
    /// `fleet.timeout`, `fleet.retry_after`) and never shows the password.
    pub(crate) fn validate(&self) -> Result<()> {
        check_url(&self.url)?;
        if self.prefix.is_empty() {
            return Err(Error::invalid("fleet.prefix", "must not be empty"));
        }
        if self
            .prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid(
                "fleet.prefix",
                format!("{:?} contains whitespace", self.prefix),
            ));
        }
        if self.prefix.contains(['{', '}']) {
            return Err(Error::invalid(
                "fleet.prefix",
                format!(
                    "{:?} contains a brace: the crate wraps the prefix in braces itself, a hash tag that keeps a fleet's keys in one slot of a Redis Cluster",
                    self.prefix
                ),
            ));
        }
        check_duration(self.timeout, "fleet.timeout")?;
        check_duration(self.retry_after, "fleet.retry_after")?;
        if let Some(pem) = &self.ca_pem {
            if !self.url.starts_with("rediss://") {
                return Err(Error::invalid(
                    "fleet.ca_certificate_pem",
                    "a CA is for rediss:// (TLS) URLs only",
                ));
            }
            crate::transport::check_ca_pem(pem, "fleet.ca_certificate_pem")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetConfig")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("retry_after", &self.retry_after)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<PEM>"))
            .finish()
    }
}

fn check_duration(d: Duration, field: &'static str) -> Result<()> {
    if d.is_zero() {
        return Err(Error::invalid(field, "must be greater than zero"));
    }
    if d > MAX_DURATION {
        return Err(Error::invalid(
            field,
            format!("{d:?} is longer than an hour"),
        ));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<()> {
    let shown = redact(url);
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(Error::invalid(
            "fleet.url",
            format!("{shown:?} is not a URL (redis://host:port)"),
        ));
    };
    if !SCHEMES.contains(&scheme) {
        return Err(Error::invalid(
            "fleet.url",
            format!("scheme {scheme:?} is not one of redis, rediss, unix, redis+unix"),
        ));
    }
    // The client's own parser decides the rest; its message is dropped as it may quote the URL.
    if redis::Client::open(url).is_err() {
        return Err(Error::invalid(
            "fleet.url",
            format!("{shown:?} is not a Redis URL"),
        ));
    }
    Ok(())
}

/// Returns `url` with the password of its userinfo (and a `pass=` query value) replaced by `***`.
///
/// A password may hold unencoded `/`, `?`, `#` or `@` (base64 passwords do), so the userinfo of
/// a `redis://` or `rediss://` URL ends at its last `@`, not at the first delimiter: a host
/// never holds an `@`.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let tcp = scheme.is_some_and(|s| s.starts_with("redis"));
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) if tcp => (Some(&rest[..at]), &rest[at + 1..]),
        _ => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rsplit_once('@') {
                Some((u, _)) => (Some(u), &rest[u.len() + 1..]),
                None => (None, rest),
            }
        }
    };
    let auth_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (host, tail) = after.split_at(auth_end);
    let authority = match userinfo {
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            // `redis://secret@host`: the crate reads a lone userinfo as the username only,
            // but people write passwords there; hide it too.
            None if tcp && !userinfo.is_empty() => format!("***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => host.to_string(),
    };
    let tail = redact_query(tail);
    match scheme {
        Some(s) => format!("{s}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

/// Hides the value of `pass=` in a URL's query (Unix-socket URLs carry the password there).
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some(("pass" | "password", _)) => format!("{}=***", kv.split('=').next().unwrap_or("")),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn passwords_with_delimiters_are_redacted_whole() {
        for (url, secret, shown) in [
            (
                "rediss://:Ab/cd+ef==@cache:6380",
                "Ab/cd",
                "rediss://:***@cache:6380",
            ),
            (
                "redis://app:p?q#r@cache:6379/2",
                "p?q",
                "redis://app:***@cache:6379/2",
            ),
            (
                "redis://app:a@b/c@cache:6379",
                "a@b",
                "redis://app:***@cache:6379",
            ),
            ("rediss://x/y==@cache", "x/y", "rediss://***@cache"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            let c = FleetConfig::new(url, "svc");
            let debug = format!("{c:?}");
            assert!(!debug.contains(secret), "{debug}");
        }
        // The URL error quotes the redacted URL only.
        let e = check_url("redis://app:Ab/cd+ef==@cache:notaport").unwrap_err();
        assert!(!e.to_string().contains("Ab/cd"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = FleetConfig::new("redis://app:s3cr3t@cache.internal:6380/2", "svc");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("redis://app:***@cache.internal:6380/2"),
            "{shown}"
        );
        let c = FleetConfig::new("rediss://:s3cr3t@h:6379", "svc");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let c = FleetConfig::new("redis://s3cr3t@h:6379", "svc");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let c = FleetConfig::new("unix:///run/redis.sock?db=1&pass=s3cr3t", "svc");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("db=1&pass=***"), "{shown}");
    }

    #[test]
    fn errors_name_the_field_and_hide_the_password() {
        let field = |c: FleetConfig| {
            let e = c.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(!e.message().contains("s3cr3t"), "{}", e.message());
            e.field().unwrap()
        };
        let ok = FleetConfig::new("redis://:s3cr3t@127.0.0.1:6379", "svc");
        ok.validate().unwrap();
        FleetConfig::new("rediss://h:6380", "svc")
            .validate()
            .unwrap();
        FleetConfig::new("unix:///run/redis.sock", "svc")
            .validate()
            .unwrap();
        assert_eq!(
            field(FleetConfig::new("http://:s3cr3t@h:1", "p")),
            "fleet.url"
        );
        assert_eq!(field(FleetConfig::new(":s3cr3t@h:1", "p")), "fleet.url");
        assert_eq!(
            field(FleetConfig::new("redis://:s3cr3t@h:notaport", "p")),
            "fleet.url"
        );
        assert_eq!(field(ok.clone().timeout(Duration::ZERO)), "fleet.timeout");
        assert_eq!(
            field(ok.clone().retry_after(Duration::ZERO)),
            "fleet.retry_after"
        );
        let mut bad = ok.clone();
        bad.prefix = String::new();
        assert_eq!(field(bad.clone()), "fleet.prefix");
        // The crate owns the hash tags: a brace in the prefix would move the keys' slot.
        for braced in ["{svc}", "svc{", "s}vc"] {
            bad.prefix = braced.into();
            assert_eq!(field(bad.clone()), "fleet.prefix");
        }
        bad.prefix = "my app".into();
        assert_eq!(field(bad), "fleet.prefix");
    }

    #[test]
    fn defaults_are_documented_ones() {
        let c = FleetConfig::new("redis://h", "p");
        assert_eq!(c.timeout, Duration::from_millis(50));
        assert_eq!(c.retry_after, Duration::from_secs(1));
    }
}

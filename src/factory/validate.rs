//! The validation of a factory's configuration: every knob checked before anything is built,
//! each refusal naming the knob.

use crate::config::FactoryConfig;
use crate::error::{Error, Result};
use crate::limit::{LimitMode, ModelLimit};
use crate::model::validate_model_id;
use crate::transport::check_ca_pem;
use std::time::Duration;

/// Longest timeout or interval the builder accepts: a day.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Checks one client-side limit.
fn validate_limit(id: &str, l: &ModelLimit) -> Result<()> {
    validate_model_id(id).map_err(|e| Error::invalid("model_limit", e.message()))?;
    if l.requests.is_none() && l.tokens.is_none() {
        return Err(Error::invalid(
            "model_limit",
            format!("{id}: set requests, tokens or both"),
        ));
    }
    if l.requests == Some(0) {
        return Err(Error::invalid("model_limit.requests", "must be at least 1"));
    }
    if l.tokens == Some(0) {
        return Err(Error::invalid("model_limit.tokens", "must be at least 1"));
    }
    validate_duration(l.window, "model_limit.window")?;
    if l.burndown == Some(0) {
        return Err(Error::invalid("model_limit.burndown", "must be at least 1"));
    }
    if let LimitMode::Wait {
        max_queue,
        deadline,
    } = l.mode
    {
        if max_queue == 0 {
            return Err(Error::invalid(
                "model_limit.mode",
                "a waiting queue holds at least 1 call (use LimitMode::Reject to wait for none)",
            ));
        }
        validate_duration(deadline, "model_limit.mode")?;
    }
    Ok(())
}

fn validate_duration(d: Duration, field: &'static str) -> Result<()> {
    if d.is_zero() {
        return Err(Error::invalid(field, "must be greater than zero"));
    }
    if d > MAX_DURATION {
        return Err(Error::invalid(field, format!("{d:?} is longer than a day")));
    }
    Ok(())
}

pub(super) fn validate_region(region: &str, field: &'static str) -> Result<()> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{region:?} is not a region name (such as us-west-2)"),
        ))
    }
}

/// Checks an endpoint URL: http(s), a host, and no plain http off loopback unless allowed.
pub(crate) fn validate_url(url: &str, field: &'static str, allow_insecure: bool) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::invalid(field, format!("{url:?} is not a URL")))?;
    let host = uri
        .host()
        .ok_or_else(|| Error::invalid(field, format!("{url:?} has no host")))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") => {
            let h = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false);
            if loopback || allow_insecure {
                Ok(())
            } else {
                Err(Error::invalid(
                    field,
                    format!(
                        "{url:?} is plain http to a non-loopback host: requests would travel unencrypted (allow_insecure_http(true) to permit)"
                    ),
                ))
            }
        }
        _ => Err(Error::invalid(
            field,
            format!("{url:?} must start with https:// (or http:// for loopback)"),
        )),
    }
}

// Long because it is the list of the configuration's rules, one per knob, in the order they are reported.
pub(super) fn validate(c: &FactoryConfig) -> Result<()> {
    if c.pool.max_connections_per_host == 0 {
        return Err(Error::invalid(
            "pool_max_connections_per_host",
            "must be at least 1",
        ));
    }
    if c.pool.max_connections_per_host > 10_000 {
        return Err(Error::invalid(
            "pool_max_connections_per_host",
            format!(
                "{} is absurd (at most 10000)",
                c.pool.max_connections_per_host
            ),
        ));
    }
    if let Some(d) = c.pool.idle_timeout {
        validate_duration(d, "pool_idle_timeout")?;
    }
    if let Some(d) = c.pool.tcp_keepalive {
        validate_duration(d, "pool_tcp_keepalive")?;
        if d < Duration::from_secs(1) {
            return Err(Error::invalid(
                "pool_tcp_keepalive",
                "the kernel's keepalive idle time has a 1 s resolution",
            ));
        }
    }
    validate_duration(c.timeouts.connect, "connect_timeout")?;
    validate_duration(c.timeouts.read, "read_timeout")?;
    validate_duration(c.timeouts.stream_stall, "stream_stall_timeout")?;
    validate_duration(c.wakeup_threshold, "wakeup_threshold")?;
    validate_duration(c.failover_cooldown, "failover_cooldown")?;
    if c.retry.max_attempts == 0 {
        return Err(Error::invalid("retry_max_attempts", "must be at least 1"));
    }
    if c.retry.max_attempts > 20 {
        return Err(Error::invalid(
            "retry_max_attempts",
            format!("{} is absurd (at most 20)", c.retry.max_attempts),
        ));
    }
    if c.retry.fallback_after_attempts == 0 {
        return Err(Error::invalid(
            "fallback_after_attempts",
            "must be at least 1 (the first attempt)",
        ));
    }
    if let Some(b) = &c.breaker {
        if b.failures == 0 {
            return Err(Error::invalid(
                "circuit_breaker.failures",
                "must be at least 1",
            ));
        }
        validate_duration(b.window, "circuit_breaker.window")?;
        validate_duration(b.cooldown, "circuit_breaker.cooldown")?;
    }
    for (id, l) in &c.limits {
        validate_limit(id, l)?;
    }
    for (region, id, l) in &c.region_limits {
        if !c.regions.contains(region) {
            return Err(Error::invalid(
                "model_limit_in.region",
                format!("{region} is not one of the factory's regions"),
            ));
        }
        validate_limit(id, l)?;
    }
    let mut seen = Vec::new();
    for r in &c.regions {
        validate_region(r, "regions")?;
        if seen.contains(&r) {
            return Err(Error::invalid("regions", format!("{r} is listed twice")));
        }
        seen.push(r);
    }
    for pem in &c.extra_ca_pem {
        check_ca_pem(pem, "ca_certificate_pem")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(
            validate_url(
                "https://bedrock-runtime.us-west-2.amazonaws.com",
                "f",
                false
            )
            .is_ok()
        );
        assert!(validate_url("http://127.0.0.1:8080", "f", false).is_ok());
        assert!(validate_url("http://[::1]:8080", "f", false).is_ok());
        let e = validate_url("http://10.1.2.3", "bedrock_endpoint_url", false).unwrap_err();
        assert_eq!(e.field(), Some("bedrock_endpoint_url"));
        assert!(validate_url("http://10.1.2.3", "f", true).is_ok());
        assert!(validate_url("ftp://x", "f", false).is_err());
        assert!(validate_url("not a url", "f", false).is_err());
    }
}

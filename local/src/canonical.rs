//! The SigV4 canonical request, rebuilt from what the client sent: URI, query and the headers it
//! named in `SignedHeaders`, normalised as aws-sigv4 does.

use sha2::{Digest, Sha256};

/// Returns the SigV4 canonical request of `parts` over the headers `names` (the client's
/// `SignedHeaders`, also passed whole as `signed_headers`), or `None` when one of them is absent
/// or not visible ASCII.
pub(crate) fn canonical_request(
    parts: &http::request::Parts,
    names: &[&str],
    signed_headers: &str,
    payload_hash: &str,
) -> Option<String> {
    let mut out = format!(
        "{}\n{}\n{}\n",
        parts.method,
        canonical_uri(parts.uri.path()),
        canonical_query(parts.uri.query().unwrap_or(""))
    );
    for name in names {
        out.push_str(name);
        out.push(':');
        out.push_str(&header_value(parts, name)?);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_hash);
    Some(out)
}

/// Returns the canonical value of the signed header `name`: its values trimmed, runs of spaces
/// collapsed, joined with commas.
fn header_value(parts: &http::request::Parts, name: &str) -> Option<String> {
    // hyper puts an HTTP/2 request's `:authority` into the URI and sends no `host`, while an
    // HTTP/1.1 request has a `host` and an origin-form URI: either side may stand for the other.
    let host = || parts.headers.get(http::header::HOST)?.to_str().ok();
    let authority = || parts.uri.authority().map(|a| a.as_str());
    if name.eq_ignore_ascii_case(":authority") {
        return authority().or_else(host).map(str::to_owned);
    }
    if name.starts_with(':') {
        return None;
    }
    if name.eq_ignore_ascii_case("host") && !parts.headers.contains_key(http::header::HOST) {
        // A client that signed `host` over HTTP/2 left out the scheme's default port, as the Rust
        // SDK (aws-sigv4) does.
        let authority = parts.uri.authority()?;
        let default = matches!(
            (parts.uri.scheme_str(), authority.port_u16()),
            (Some("https"), Some(443)) | (Some("http"), Some(80))
        );
        return Some(
            if default {
                authority.host()
            } else {
                authority.as_str()
            }
            .to_owned(),
        );
    }
    let mut values = Vec::new();
    for value in parts.headers.get_all(name) {
        values.push(trim_spaces(value.to_str().ok()?));
    }
    (!values.is_empty()).then(|| values.join(","))
}

/// Returns `s` without leading and trailing spaces and with every run of spaces made one.
fn trim_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Returns the canonical URI of a path as received (still percent-encoded): dot segments and empty
/// segments removed, then encoded again (so `%3A` becomes `%253A`), as SigV4 does for every
/// service but S3.
fn canonical_uri(path: &str) -> String {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    // The same normalization as aws-sigv4 and the JavaScript SDK: only paths with a dot or a double
    // slash change.
    let normalized = if path.contains('.') || path.contains("//") {
        let mut segments: Vec<&str> = Vec::new();
        for segment in path.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                other => segments.push(other),
            }
        }
        let mut normalized = format!("/{}", segments.join("/"));
        let trailing = ["/", "/.", "/./", "/..", "/../"]
            .iter()
            .any(|end| path.ends_with(end));
        if trailing && !normalized.ends_with('/') {
            normalized.push('/');
        }
        normalized
    } else {
        path
    };
    uri_encode(&normalized, true)
}

/// Returns the canonical query string: each `name=value` pair decoded, encoded again with SigV4's
/// rules, and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&form_decode(name), false),
                uri_encode(&form_decode(value), false),
            )
        })
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.join("&")
}

/// Returns a query component decoded as `application/x-www-form-urlencoded` (`+` is a space), as
/// aws-sigv4 reads it; a `%` not followed by two hex digits stays as it is.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|&c| (c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make at most 0xFF.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns `s` with every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`, and `/` when
/// `keep_slash`) written as `%XX`.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Returns the lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_and_query_follow_sigv4() {
        let expected = "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse";
        let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
        assert_eq!(canonical_uri(path), expected);
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_query("b=2&a=x+y&a=%2F&c"), "a=%2F&a=x%20y&b=2&c=");
        assert_eq!(canonical_query("k=%zz%41"), "k=%25zzA");
    }
}

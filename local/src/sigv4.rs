//! SigV4 verification: the scope, key id, date and skew checked, the canonical request (see
//! `canonical`) signed with aws-sigv4's key derivation, and compared with the client's signature.

use std::time::{Duration, SystemTime};

use aws_sigv4::sign::v4;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use super::canonical::{canonical_request, sha256_hex};
use super::fault::ServiceError;

/// The accepted identity and scope of one listener.
pub(crate) struct Expected<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
    pub(crate) region: &'a str,
    /// `bedrock` or `sts`.
    pub(crate) service: &'a str,
    /// The request's body is an event stream signed message by message: its payload hash may
    /// be the literal `STREAMING-AWS4-HMAC-SHA256-EVENTS` (the JavaScript SDK sends and signs
    /// it; the Rust SDK signs an empty payload instead).
    pub(crate) event_stream: bool,
}

/// The payload hash of a request whose event-stream messages are signed one by one.
pub(crate) const STREAMING_EVENTS: &str = "STREAMING-AWS4-HMAC-SHA256-EVENTS";

/// The largest accepted clock skew between `x-amz-date` and now.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

const MISMATCH: &str = "The request signature we calculated does not match the signature you \
                        provided. Check your AWS Secret Access Key and signing method. Consult the \
                        service documentation for details.";

/// Returns Ok if the request carries a valid SigV4 signature for `expected`, else the error AWS
/// answers with (Bedrock names, or STS names when `expected.service` is `sts`).
// Long because it follows SigV4's verification steps in order, each refusal worded as the service words it.
pub(crate) fn verify(
    parts: &http::request::Parts,
    body: &[u8],
    expected: &Expected<'_>,
) -> Result<(), ServiceError> {
    let sts = expected.service == "sts";
    let bad_signature = |message: String| {
        if sts {
            ServiceError::custom(403, "SignatureDoesNotMatch", message)
        } else {
            ServiceError::custom(403, "InvalidSignatureException", message)
        }
    };
    let incomplete = |message: &str| {
        if sts {
            ServiceError::custom(400, "IncompleteSignature", message)
        } else {
            ServiceError::custom(403, "IncompleteSignatureException", message)
        }
    };

    let Some(auth) = parts.headers.get(http::header::AUTHORIZATION) else {
        return Err(if sts {
            ServiceError::custom(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            )
        } else {
            ServiceError::custom(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        });
    };
    let auth = auth
        .to_str()
        .map_err(|_| incomplete("Authorization header is not ASCII."))?;
    let Some(params) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(incomplete(
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm.",
        ));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in params.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(incomplete("Credential is malformed."));
    };

    if *key_id != expected.access_key_id {
        let message = "The security token included in the request is invalid.";
        return Err(if sts {
            ServiceError::custom(403, "InvalidClientTokenId", message)
        } else {
            ServiceError::custom(403, "UnrecognizedClientException", message)
        });
    }
    if *service != expected.service {
        return Err(bad_signature(format!(
            "Credential should be scoped to correct service: '{}'. ",
            expected.service
        )));
    }
    if *region != expected.region {
        return Err(bad_signature(format!(
            "Credential should be scoped to a valid region, not '{region}'. "
        )));
    }

    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("Missing X-Amz-Date header."))?;
    let time = parse_amz_date(amz_date).ok_or_else(|| incomplete("X-Amz-Date is malformed."))?;
    let now = SystemTime::now();
    let skew = now
        .duration_since(time)
        .or_else(|_| time.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(bad_signature(format!(
            "Signature expired: {amz_date} is now earlier or later than 5 minutes from now."
        )));
    }

    // Take the signed headers as the client listed them, rather than re-signing with aws-sigv4's
    // request signer: that one always signs `host`, while HTTP/2 clients (the AWS SDK for
    // JavaScript) sign the `:authority` pseudo-header instead.
    let names: Vec<&str> = signed_headers.split(';').collect();
    let signs = |name: &str| names.iter().any(|n| n.eq_ignore_ascii_case(name));
    // As aws-sigv4 does, the authority, the date and a session token sent must be signed.
    if !(signs("host") || signs(":authority"))
        || !signs("x-amz-date")
        || (parts.headers.contains_key("x-amz-security-token") && !signs("x-amz-security-token"))
    {
        return Err(bad_signature(MISMATCH.to_owned()));
    }
    let sent_hash = parts.headers.get("x-amz-content-sha256");
    let payload_hash = match sent_hash {
        Some(h) if expected.event_stream && h.as_bytes() == STREAMING_EVENTS.as_bytes() => {
            STREAMING_EVENTS.to_owned()
        }
        _ => sha256_hex(body),
    };
    if let Some(sent) = sent_hash
        && !sent
            .as_bytes()
            .eq_ignore_ascii_case(payload_hash.as_bytes())
    {
        return Err(bad_signature(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
                .to_owned(),
        ));
    }
    let canonical = canonical_request(parts, &names, signed_headers, &payload_hash)
        .ok_or_else(|| bad_signature(MISMATCH.to_owned()))?;
    let date = amz_date
        .get(..8)
        .ok_or_else(|| incomplete("X-Amz-Date is malformed."))?;
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{}/{}/aws4_request\n{}",
        expected.region,
        expected.service,
        sha256_hex(canonical.as_bytes())
    );
    let key = v4::generate_signing_key(
        expected.secret_access_key,
        time,
        expected.region,
        expected.service,
    );
    let computed = v4::calculate_signature(key, string_to_sign.as_bytes());
    if constant_time_eq(computed.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(bad_signature(MISMATCH.to_owned()))
    }
}

/// Returns the key of an `Authorization: Bearer <key>` header, if the request carries one.
pub(crate) fn bearer_key(parts: &http::request::Parts) -> Option<&str> {
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Returns the time of an `x-amz-date` value (`20240101T000000Z`).
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        s.get(0..4)?,
        s.get(4..6)?,
        s.get(6..8)?,
        s.get(9..11)?,
        s.get(11..13)?,
        s.get(13..15)?
    );
    let dt = DateTime::from_str(&rfc3339, Format::DateTime).ok()?;
    SystemTime::try_from(dt).ok()
}

/// Returns whether two byte strings are equal, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_smithy_runtime_api::client::identity::Identity;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::identity::{TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY};

    const BEDROCK: Expected<'static> = Expected {
        event_stream: false,
        access_key_id: TEST_ACCESS_KEY_ID,
        secret_access_key: TEST_SECRET_ACCESS_KEY,
        region: "us-west-2",
        service: "bedrock",
    };
    const PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
    const BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;

    /// Returns now, whole seconds, as x-amz-date has it.
    fn now() -> SystemTime {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Returns `time` as an `x-amz-date` value.
    fn amz_date(time: SystemTime) -> String {
        DateTime::from(time)
            .fmt(Format::DateTime)
            .expect("formats")
            .replace(['-', ':'], "")
    }

    /// Returns the parts of a request to `uri` signed by aws-sigv4 (as the Rust SDK signs), sent
    /// with the URI `sent_uri` as hyper hands it to the server.
    fn signed_by_aws_sigv4(
        uri: &str,
        sent_uri: &str,
        headers: &[(&str, &str)],
        secret: &str,
        token: Option<&str>,
    ) -> http::request::Parts {
        let identity: Identity = Credentials::new(
            TEST_ACCESS_KEY_ID,
            secret,
            token.map(str::to_owned),
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-west-2")
            .name("bedrock")
            .time(now())
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let signable = SignableRequest::new(
            "POST",
            uri,
            headers.iter().copied(),
            SignableBody::Bytes(BODY),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
        let mut request = http::Request::builder().method("POST").uri(sent_uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).expect("request");
        instructions.apply_to_request_http1x(&mut request);
        request.into_parts().0
    }

    /// Returns the error type name of a verification result, or `ok`.
    fn outcome(result: Result<(), ServiceError>) -> String {
        match result {
            Ok(()) => "ok".to_owned(),
            Err(ServiceError::Custom { name, .. }) => name,
            Err(other) => format!("{other:?}"),
        }
    }

    #[test]
    fn http1_request_signed_over_host_verifies() {
        let uri = format!("https://127.0.0.1:8443{PATH}?maxResults=1&nextToken=a%2Fb%20c");
        let sent = format!("{PATH}?maxResults=1&nextToken=a%2Fb%20c");
        let headers = [
            ("host", "127.0.0.1:8443"),
            ("content-type", "application/json"),
            ("x-amz-user-agent", "aws-sdk-rust/1  os/linux"),
        ];
        let parts = signed_by_aws_sigv4(&uri, &sent, &headers, TEST_SECRET_ACCESS_KEY, None);
        assert_eq!(outcome(verify(&parts, BODY, &BEDROCK)), "ok");
    }

    #[test]
    fn http2_request_signed_over_host_verifies() {
        // The Rust SDK signs `host` over h2 too; hyper then passes no Host header, only the URI.
        let uri = format!("https://127.0.0.1:8443{PATH}");
        let headers = [("content-type", "application/json")];
        let parts = signed_by_aws_sigv4(&uri, &uri, &headers, TEST_SECRET_ACCESS_KEY, None);
        assert!(parts.headers.get(http::header::HOST).is_none());
        assert_eq!(outcome(verify(&parts, BODY, &BEDROCK)), "ok");
    }

    #[test]
    fn signed_session_token_verifies_and_an_unsigned_one_does_not() {
        let uri = format!("https://127.0.0.1:8443{PATH}");
        let headers = [("content-type", "application/json")];
        let token = Some("session-token");
        let parts = signed_by_aws_sigv4(&uri, &uri, &headers, TEST_SECRET_ACCESS_KEY, token);
        assert!(parts.headers.contains_key("x-amz-security-token"));
        assert_eq!(outcome(verify(&parts, BODY, &BEDROCK)), "ok");

        let mut parts = signed_by_aws_sigv4(&uri, &uri, &headers, TEST_SECRET_ACCESS_KEY, None);
        let token = http::HeaderValue::from_static("session-token");
        parts.headers.insert("x-amz-security-token", token);
        let result = verify(&parts, BODY, &BEDROCK);
        assert_eq!(outcome(result), "InvalidSignatureException");
    }

    /// Returns the lowercase hex SHA-256 of `data`, computed here rather than by the code under
    /// test.
    fn hex_sha256(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Returns the parts of an HTTP/2 request signed over `:authority` the way the AWS SDK for
    /// JavaScript v3 signs it, the signature computed here from the canonical request's text.
    fn signed_over_authority(secret: &str) -> http::request::Parts {
        let time = now();
        let date = amz_date(time);
        let hash = hex_sha256(BODY);
        let canonical = format!(
            "POST\n\
             /model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\
             \n\
             :authority:127.0.0.1:8443\n\
             amz-sdk-invocation-id:d9f2a1c0-0000-4000-8000-000000000001\n\
             content-type:application/json\n\
             x-amz-content-sha256:{hash}\n\
             x-amz-date:{date}\n\
             \n\
             :authority;amz-sdk-invocation-id;content-type;x-amz-content-sha256;x-amz-date\n\
             {hash}"
        );
        let scope = format!("{}/us-west-2/bedrock/aws4_request", &date[..8]);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex_sha256(canonical.as_bytes())
        );
        let key = v4::generate_signing_key(secret, time, "us-west-2", "bedrock");
        let signature = v4::calculate_signature(key, string_to_sign.as_bytes());
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/{scope}, \
             SignedHeaders=:authority;amz-sdk-invocation-id;content-type;x-amz-content-sha256;\
             x-amz-date, Signature={signature}"
        );
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("https://127.0.0.1:8443{PATH}"))
            .header(
                "amz-sdk-invocation-id",
                "d9f2a1c0-0000-4000-8000-000000000001",
            )
            .header("content-type", "application/json")
            .header("x-amz-content-sha256", hash)
            .header("x-amz-date", date)
            .header("authorization", authorization)
            .body(())
            .expect("request");
        request.into_parts().0
    }

    #[test]
    fn http2_request_signed_over_authority_verifies() {
        let parts = signed_over_authority(TEST_SECRET_ACCESS_KEY);
        assert_eq!(outcome(verify(&parts, BODY, &BEDROCK)), "ok");
    }

    #[test]
    fn tampering_or_a_wrong_secret_fails() {
        let mismatch = "InvalidSignatureException";
        let parts = signed_over_authority("wrong secret");
        assert_eq!(outcome(verify(&parts, BODY, &BEDROCK)), mismatch);

        let mut parts = signed_over_authority(TEST_SECRET_ACCESS_KEY);
        let json = http::HeaderValue::from_static("application/x-amz-json-1.1");
        parts.headers.insert(http::header::CONTENT_TYPE, json);
        assert_eq!(outcome(verify(&parts, BODY, &BEDROCK)), mismatch);

        let parts = signed_over_authority(TEST_SECRET_ACCESS_KEY);
        let result = verify(&parts, br#"{"messages":[]}"#, &BEDROCK);
        assert_eq!(outcome(result), mismatch);

        let mut parts = signed_over_authority(TEST_SECRET_ACCESS_KEY);
        parts.uri = format!("https://localhost:8443{PATH}")
            .parse()
            .expect("uri");
        assert_eq!(outcome(verify(&parts, BODY, &BEDROCK)), mismatch);

        let uri = format!("https://127.0.0.1:8443{PATH}");
        let headers = [("content-type", "application/json")];
        let parts = signed_by_aws_sigv4(&uri, &uri, &headers, TEST_SECRET_ACCESS_KEY, None);
        assert_eq!(outcome(verify(&parts, b"{}", &BEDROCK)), mismatch);
        let parts = signed_by_aws_sigv4(&uri, &uri, &headers, "wrong secret", None);
        assert_eq!(outcome(verify(&parts, BODY, &BEDROCK)), mismatch);
    }

    #[test]
    fn parses_amz_date() {
        let t = parse_amz_date("20240102T030405Z");
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645);
        assert_eq!(t, Some(expected));
        assert_eq!(parse_amz_date("2024-01-02"), None);
        assert_eq!(parse_amz_date("2024010XT030405Z"), None);
    }
}

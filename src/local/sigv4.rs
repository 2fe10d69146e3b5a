//! SigV4 verification by re-signing the request with aws-sigv4 and comparing signatures.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use super::fault::ServiceError;

/// The accepted identity and scope of one listener.
pub(crate) struct Expected<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
    pub(crate) region: &'a str,
    /// `bedrock` or `sts`.
    pub(crate) service: &'a str,
}

/// The largest accepted clock skew between `x-amz-date` and now.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

const MISMATCH: &str = "The request signature we calculated does not match the signature you \
                        provided. Check your AWS Secret Access Key and signing method. Consult the \
                        service documentation for details.";

/// Returns Ok if the request carries a valid SigV4 signature for `expected`, else the error AWS
/// answers with (Bedrock names, or STS names when `expected.service` is `sts`).
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

    let session_token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let identity: Identity = Credentials::new(
        expected.access_key_id,
        expected.secret_access_key,
        session_token,
        None,
        "bedrock-pool-local",
    )
    .into();

    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in signed_headers.split(';') {
        for value in parts.headers.get_all(name) {
            let value = value
                .to_str()
                .map_err(|_| bad_signature(MISMATCH.to_owned()))?;
            headers.push((name, value));
        }
    }
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let uri = match parts.uri.query() {
        Some(q) => format!("http://{host}{}?{q}", parts.uri.path()),
        None => format!("http://{host}{}", parts.uri.path()),
    };

    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(vec![]);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(expected.region)
        .name(expected.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|_| bad_signature(MISMATCH.to_owned()))?
        .into();
    let signable = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| bad_signature(MISMATCH.to_owned()))?;
    let computed = sign(signable, &params).map_err(|_| bad_signature(MISMATCH.to_owned()))?;
    if constant_time_eq(computed.signature().as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(bad_signature(MISMATCH.to_owned()))
    }
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
    use super::*;

    #[test]
    fn parses_amz_date() {
        let t = parse_amz_date("20240102T030405Z");
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645);
        assert_eq!(t, Some(expected));
        assert_eq!(parse_amz_date("2024-01-02"), None);
        assert_eq!(parse_amz_date("2024010XT030405Z"), None);
    }
}

//! Unit tests of the error type and its mapping.

use super::*;

#[test]
fn codes_map_to_kinds() {
    assert_eq!(
        kind_for_code(Some("ThrottlingException"), Some(429)),
        ErrorKind::Throttled
    );
    assert_eq!(
        kind_for_code(Some("ExpiredToken"), Some(400)),
        ErrorKind::AccessDenied
    );
    assert_eq!(
        kind_for_code(Some("ResourceNotFoundException"), Some(404)),
        ErrorKind::ModelNotFound
    );
    assert_eq!(
        kind_for_code(None, Some(502)),
        ErrorKind::ServiceUnavailable
    );
    assert_eq!(kind_for_code(Some("Odd"), None), ErrorKind::Other);
}

#[test]
fn invalid_input_names_the_field() {
    let e = Error::invalid("temperature", "1.5 is outside [0, 1]");
    assert!(e.is_invalid_input());
    assert_eq!(e.field(), Some("temperature"));
    assert!(e.to_string().contains("temperature"));
    assert!(!e.is_retryable());
}

#[test]
fn error_is_one_pointer_wide() {
    assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    assert_eq!(
        std::mem::size_of::<Result<()>>(),
        std::mem::size_of::<usize>()
    );
}

#[test]
fn display_does_not_repeat_the_source() {
    let source = std::io::Error::other("the socket said no");
    let e = Error::new(ErrorKind::Network, "converse failed: network error").with_source(source);
    assert_eq!(e.to_string(), "converse failed: network error");
    assert_eq!(
        e.source().map(|s| s.to_string()).as_deref(),
        Some("the socket said no")
    );
    assert!(format!("{e:?}").contains("the socket said no"));
}

#[test]
fn model_failures_are_retryable_and_stay_in_their_region() {
    let e = Error::new(ErrorKind::ModelFailure, "model timed out");
    assert!(e.is_retryable());
    assert!(!e.is_regional());
    assert!(!Error::new(ErrorKind::Validation, "bad").is_retryable());
}

#[test]
fn kinds_have_distinct_indices() {
    for (i, k) in ErrorKind::ALL.iter().enumerate() {
        assert_eq!(k.index(), i);
    }
}

#[test]
fn input_too_long_is_a_context_window_error() {
    for m in [
        "Input is too long for requested model.",
        "The model returned the following errors: prompt is too long: 215000 tokens > 200000 maximum",
        "The model returned the following errors: input length and `max_tokens` exceed context limit: 199000 + 8192 > 200000",
        "This model's maximum context length is 8192 tokens.",
    ] {
        assert!(is_context_overflow(m), "{m}");
    }
    assert!(!is_context_overflow("temperature: must be between 0 and 1"));
    let e = Error::new(ErrorKind::ContextWindowExceeded, "too long");
    assert!(e.falls_back());
    assert!(!e.is_retryable());
    assert!(!e.is_regional());
    assert!(!Error::new(ErrorKind::Validation, "bad").falls_back());
    assert!(!Error::new(ErrorKind::AccessDenied, "no").falls_back());
    assert!(Error::new(ErrorKind::Throttled, "slow down").falls_back());
}

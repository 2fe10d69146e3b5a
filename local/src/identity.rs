//! The test identity the server accepts by default: public, fake constants.

/// The access key id the server accepts by default (a public, fake test constant).
pub const TEST_ACCESS_KEY_ID: &str = "AKIALOCALTESTKEY0001";
/// The secret access key the server accepts by default (a public, fake test constant).
pub const TEST_SECRET_ACCESS_KEY: &str = "localTestSecretKeyNotARealSecret000000000";
/// The region the server expects requests to be signed for by default.
pub const TEST_REGION: &str = "us-west-2";
/// The account id in the STS caller identity.
pub const TEST_ACCOUNT_ID: &str = "123456789012";
/// The Bedrock API key the server accepts by default as `Authorization: Bearer <key>` (a public,
/// fake test constant shaped like real Bedrock API keys, which start with `ABSK`).
pub const TEST_API_KEY: &str = "ABSKTG9jYWxUZXN0QXBpS2V5Tm90QVJlYWxLZXk=";

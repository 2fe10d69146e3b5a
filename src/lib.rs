//! A pooled Amazon Bedrock client factory.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub mod local;

//! The assembly behind [`LlmFactoryBuilder::build`](super::LlmFactoryBuilder::build): the SDK
//! configuration, the endpoints (explicit, from the SDK configuration or the environment), and
//! the SDK clients of each region and of STS.

use super::super::validate::validate_url;
use crate::config::{DEFAULT_REGION, FactoryConfig, RetryMode};
use crate::error::{Error, Result};
use crate::region::RegionClient;
use crate::transport::{ModelCallClassifier, Transport};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::retry::{ReconnectMode, RetryConfig as SdkRetryConfig};
use aws_smithy_types::timeout::TimeoutConfig as SdkTimeoutConfig;

/// Returns the SDK configuration every client is built from: `base` (or the AWS environment's)
/// with the factory's transport, timeouts, retries and credentials.
pub(super) async fn sdk_config(
    config: &FactoryConfig,
    transport: &Transport,
    base: Option<SdkConfig>,
    credentials: Option<SharedCredentialsProvider>,
) -> SdkConfig {
    let timeouts = SdkTimeoutConfig::builder()
        .connect_timeout(config.timeouts.connect)
        .read_timeout(config.timeouts.read)
        .build();
    let retry = match config.retry.mode {
        RetryMode::Adaptive => SdkRetryConfig::adaptive(),
        RetryMode::Standard => SdkRetryConfig::standard(),
    }
    .with_max_attempts(config.retry.max_attempts)
    // Only the transport retires connections, after a timeout or an IO error; a 5xx
    // answered on a healthy connection says nothing about that connection.
    .with_reconnect_mode(ReconnectMode::ReuseAllConnections);
    match base {
        Some(base) => {
            let mut b = base.to_builder();
            b.set_http_client(Some(transport.http_client()));
            b.set_timeout_config(Some(timeouts));
            b.set_retry_config(Some(retry));
            if let Some(c) = credentials {
                b.set_credentials_provider(Some(c));
            }
            b.build()
        }
        None => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(transport.http_client())
                .timeout_config(timeouts)
                .retry_config(retry);
            if let Some(r) = config.regions.first() {
                loader = loader.region(Region::new(r.clone()));
            }
            if let Some(c) = credentials {
                loader = loader.credentials_provider(c);
            }
            loader.load().await
        }
    }
}

/// Settles the regions: the SDK configuration's (else the default) when none was set; each
/// region with its own endpoint must be one of them.
pub(super) fn settle_regions(
    config: &mut FactoryConfig,
    sdk_config: &SdkConfig,
    region_endpoints: &[(String, String)],
) -> Result<()> {
    if config.regions.is_empty() {
        config.regions = vec![
            sdk_config
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        ];
    }
    if let Some((region, _)) = region_endpoints
        .iter()
        .find(|(r, _)| !config.regions.contains(r))
    {
        return Err(Error::invalid(
            "region_endpoint_url",
            format!(
                "{region} is not one of the factory's regions ({}): add it with regions(..)",
                config.regions.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The endpoint overrides of Bedrock Runtime (the primary region's) and STS, when any.
pub(super) struct Overrides {
    pub(super) bedrock: Option<String>,
    pub(super) sts: Option<String>,
}

/// Returns the endpoint overrides: the factory's, else the SDK configuration's, else the
/// environment's (`AWS_ENDPOINT_URL_*`), each checked.
pub(super) fn overrides(config: &FactoryConfig, sdk_config: &SdkConfig) -> Result<Overrides> {
    // The SDK reads AWS_ENDPOINT_URL_* itself; read them here too so statistics know the origin.
    let env_url = |service: &str| {
        std::env::var(format!("AWS_ENDPOINT_URL_{service}"))
            .ok()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|u| !u.is_empty())
    };
    let bedrock = config
        .bedrock_endpoint_url
        .clone()
        .or_else(|| sdk_config.endpoint_url().map(str::to_owned))
        .or_else(|| env_url("BEDROCK_RUNTIME"));
    let sts = config
        .sts_endpoint_url
        .clone()
        .or_else(|| sdk_config.endpoint_url().map(str::to_owned))
        .or_else(|| env_url("STS"));
    for (name, url) in [
        ("bedrock_endpoint_url", &bedrock),
        ("sts_endpoint_url", &sts),
    ] {
        if let Some(u) = url {
            validate_url(u, name, config.allow_insecure_http)?;
        }
    }
    Ok(Overrides { bedrock, sts })
}

/// What every region's client is built with.
pub(super) struct ClientParts<'a> {
    pub(super) config: &'a FactoryConfig,
    pub(super) sdk_config: &'a SdkConfig,
    pub(super) factory_id: u64,
    /// Explicit endpoints by region.
    pub(super) region_endpoints: &'a [(String, String)],
    pub(super) api_key: Option<&'a str>,
}

/// Returns the Bedrock Runtime client of each region, in the regions' order: the primary one
/// on the Bedrock override unless the region has its own endpoint.
pub(super) fn region_clients(parts: &ClientParts<'_>, bedrock: Option<&str>) -> Vec<RegionClient> {
    let config = parts.config;
    config
        .regions
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let explicit = parts
                .region_endpoints
                .iter()
                .find(|(r, _)| r == region)
                .map(|(_, u)| u.clone());
            let url = explicit.or_else(|| (i == 0).then(|| bedrock.map(str::to_owned)).flatten());
            region_client(parts, region, url)
        })
        .collect()
}

/// Returns the Bedrock Runtime client of `region`, on `url` when set.
fn region_client(parts: &ClientParts<'_>, region: &str, url: Option<String>) -> RegionClient {
    let mut b = aws_sdk_bedrockruntime::config::Builder::from(parts.sdk_config)
        .region(Region::new(region.to_owned()))
        .retry_partition(crate::lanes::partition(parts.factory_id, region))
        .retry_classifier(ModelCallClassifier);
    if let Some(u) = &url {
        b = b.endpoint_url(u.clone());
    }
    if let Some(key) = parts.api_key {
        b = b
            .bearer_token(aws_sdk_bedrockruntime::config::Token::new(
                key.to_owned(),
                None,
            ))
            .auth_scheme_preference([
                aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID,
            ]);
    }
    let endpoint_url =
        url.unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
    RegionClient::new(
        region.to_owned(),
        aws_sdk_bedrockruntime::Client::from_conf(b.build()),
        endpoint_url,
        parts.config.wakeup_threshold,
    )
}

/// Returns the STS client (in the primary region, on `url` when set) and its endpoint.
pub(super) fn sts_client(
    parts: &ClientParts<'_>,
    url: Option<String>,
) -> (aws_sdk_sts::Client, String) {
    let primary = parts.config.regions[0].clone();
    let mut b = aws_sdk_sts::config::Builder::from(parts.sdk_config)
        .region(Region::new(primary.clone()))
        .retry_partition(crate::lanes::partition(parts.factory_id, "sts"));
    if let Some(u) = &url {
        b = b.endpoint_url(u.clone());
    }
    let sts_url = url.unwrap_or_else(|| format!("https://sts.{primary}.amazonaws.com"));
    (aws_sdk_sts::Client::from_conf(b.build()), sts_url)
}

//! The SDK's own HTTP client, trusting the server's CA: what [`LocalServer::sdk_config`]
//! gives a test that talks to the server with the SDK's behaviour, unchanged.
//!
//! [`LocalServer::sdk_config`]: crate::LocalServer::sdk_config

use aws_smithy_http_client::pool::{
    Client as PoolClient, ConnectionPool, DriverSpawner, Partition, PartitionId,
};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use std::io;

const PARTITION: PartitionId = PartitionId::from_index(0);

/// Returns a pool client with the pool's defaults that trusts only the CA in `ca_pem`, bound to
/// the current tokio runtime when there is one.
pub(crate) fn plain_client(ca_pem: &str) -> io::Result<SharedHttpClient> {
    let trust = TrustStore::empty().with_pem_certificate(ca_pem.as_bytes().to_vec());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(io::Error::other)?;
    let pool = ConnectionPool::builder();
    let (pool, partition) = match tokio::runtime::Handle::try_current() {
        Ok(handle) => (
            pool.partitions([Partition::new(PARTITION, DriverSpawner::tokio(handle))]),
            PARTITION,
        ),
        Err(_) => (pool, PartitionId::ANONYMOUS),
    };
    let pool = pool
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
        .map_err(io::Error::other)?;
    let client = PoolClient::from_partition(&pool, partition).map_err(io::Error::other)?;
    Ok(SharedHttpClient::new(client))
}

//! File descriptors return to the baseline once the factory and server are dropped.
//! Alone in its test binary: descriptors are counted process-wide.

mod common;

use bedrock_pool_local::{LocalServer, Protocol};
use common::{builder_for, eventually};
use std::time::Duration;

fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

#[tokio::test]
async fn dropping_the_factory_and_server_returns_file_descriptors() {
    let Some(before) = open_fds() else { return };
    {
        let server = LocalServer::builder()
            .protocol(Protocol::HttpsH1Only)
            .start()
            .await
            .unwrap();
        let factory = builder_for(&server).build().await.unwrap();
        factory.warm_up(10).await.unwrap();
        assert!(open_fds().unwrap() >= before + 10);
    }
    // Both sides' sockets close once the factory's pool and the server are gone.
    assert!(
        eventually(Duration::from_secs(5), || open_fds().unwrap() <= before).await,
        "{} fds open, {before} before",
        open_fds().unwrap()
    );
}

//! `rediss://` end to end: a redis-server speaking TLS only, with a certificate from a private
//! CA; the fleet trusts that CA through `FleetConfig::ca_certificate_pem` (rustls).

use super::{RedisServer, prefix};
use crate::fleet::{Admission, Fleet, FleetConfig, FleetDown, WindowSpec};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::time::Duration;

const SPEC: WindowSpec = WindowSpec {
    requests: Some(5),
    tokens: None,
    window: Duration::from_secs(10),
};

/// Writes a CA, and a server certificate for 127.0.0.1 signed by it, into a temporary
/// directory; returns the files (certificate, key, CA) and the CA's PEM.
fn certificates() -> ([std::path::PathBuf; 3], String) {
    let ca_key = KeyPair::generate().expect("a key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name
        .push(DnType::CommonName, "fleet test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("the CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("a key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("the certificate");
    let dir = std::env::temp_dir().join(format!("bedrock-pool-fleet-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let files = [
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    ];
    for (path, pem) in files
        .iter()
        .zip([cert.pem(), key.serialize_pem(), ca_cert.pem()])
    {
        std::fs::write(path, pem).expect("written");
    }
    (files, ca_cert.pem())
}

#[tokio::test]
async fn rediss_with_a_private_ca_shares_the_window_and_without_it_falls_back() {
    let (files, ca_pem) = certificates();
    let certs_dir = files[0].clone();
    let Some(redis) = RedisServer::start_tls(files).await else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}", redis.port());
    let config = |ca: Option<&str>| {
        let c = FleetConfig::new(&url, prefix("tls"))
            .timeout(Duration::from_millis(500))
            .retry_after(Duration::from_millis(300));
        match ca {
            Some(pem) => c.ca_certificate_pem(pem),
            None => c,
        }
    };
    let trusted = Fleet::new(&config(Some(&ca_pem))).expect("fleet builds");
    let a = trusted
        .acquire("m", SPEC, 1, &[])
        .await
        .expect("TLS round trip");
    assert!(matches!(a.admission, Admission::Admitted(_)), "{a:?}");
    assert!(trusted.stats().up);

    // The platform's roots do not know this CA: the handshake fails into a fallback.
    let untrusted = Fleet::new(&config(None)).expect("fleet builds");
    assert_eq!(untrusted.acquire("m", SPEC, 1, &[]).await, Err(FleetDown));
    assert_eq!(untrusted.stats().errors, 1);
    drop(redis);
    if let Some(dir) = certs_dir.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_ca_is_checked_and_only_for_rediss() {
    let e = FleetConfig::new("redis://127.0.0.1:6379", "p")
        .ca_certificate_pem("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        .validate()
        .unwrap_err();
    assert_eq!(e.field(), Some("fleet.ca_certificate_pem"));
    let e = FleetConfig::new("rediss://127.0.0.1:6379", "p")
        .ca_certificate_pem("not a certificate")
        .validate()
        .unwrap_err();
    assert_eq!(e.field(), Some("fleet.ca_certificate_pem"));
    let debug = format!(
        "{:?}",
        FleetConfig::new("rediss://:hunter2@127.0.0.1:6379", "p").ca_certificate_pem("x")
    );
    assert!(
        debug.contains("<PEM>") && !debug.contains("hunter2"),
        "{debug}"
    );
}

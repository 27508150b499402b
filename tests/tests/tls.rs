//! `rediss://` with an ACL user (feature `tls`): a `redis-server` of the test's own with a TLS
//! port and certificates the test makes (a CA, the server's, a client's); the password never
//! shows in `Debug` or errors.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cached_query::{QueryCache, QueryCacheBuilder, cached_query};
use cached_query_tests::cluster::RedisCluster;
use cached_query_tests::matrix::until_reachable;
use cached_query_tests::{RedisServer, free_port};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const PASSWORD: &str = "s3cret-tls";
/// The caches' timeout here: a debug build's TLS requests on a loaded machine can outlast the
/// default 50 ms (connecting has its own timeout, at least 1 s).
const HANDSHAKE: Duration = Duration::from_secs(2);

/// PEMs of a CA, a server certificate for `localhost` and `127.0.0.1`, and a client
/// certificate, each signed by the CA, with their keys.
struct Certificates {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn certificates() -> Certificates {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "cached-query test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    // Each its own subject: one equal to its issuer's reads as self-signed to OpenSSL.
    let signed = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0].clone());
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Certificates {
        ca,
        server: signed(vec!["localhost".into(), "127.0.0.1".into()]),
        client: signed(vec!["cached-query-test-client".into()]),
    }
}

/// `redis-server` arguments for a TLS port besides the plain one (which the test's own
/// `redis-cli` uses), with the certificates written to `dir`; `auth_clients` is
/// `--tls-auth-clients` (`no`, `yes`).
fn tls_args(dir: &Path, certs: &Certificates, auth_clients: &str, tls_port: u16) -> Vec<String> {
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_string_lossy().into_owned()
    };
    vec![
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        write("server.crt", &certs.server.0),
        "--tls-key-file".to_owned(),
        write("server.key", &certs.server.1),
        "--tls-ca-cert-file".to_owned(),
        write("ca.crt", &certs.ca),
        "--tls-auth-clients".to_owned(),
        auth_clients.to_owned(),
    ]
}

/// `builder` trusting the test's CA, with the timeout of this file.
fn trusting(builder: QueryCacheBuilder, certs: &Certificates) -> QueryCacheBuilder {
    builder.tls_root_certificate(certs.ca.clone()).timeout(HANDSHAKE)
}

/// Adds the ACL user `app` with `PASSWORD` to `server`.
fn add_user(server: &RedisServer) {
    let acl = ["ACL", "SETUSER", "app", "on", &format!(">{PASSWORD}"), "~*", "&*", "+@all"];
    assert_eq!(server.command(&acl).as_deref().map(str::trim), Some("OK"));
}

/// A server with a plain port and a TLS port, and the ACL user `app`.
fn tls_server(dir: &Path, certs: &Certificates, auth_clients: &str) -> (RedisServer, u16) {
    let tls_port = free_port();
    let mut server = RedisServer::unstarted_with(free_port(), tls_args(dir, certs, auth_clients, tls_port));
    server.restart();
    add_user(&server);
    (server, tls_port)
}

#[cached_query(ttl = 60, tags = ["n:{n}"], cache = cache, skip(cache, calls))]
async fn squared(cache: &QueryCache, calls: &AtomicUsize, n: u64) -> u64 {
    calls.fetch_add(1, SeqCst);
    n * n
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("cq-tls-{name}-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_an_acl_user_caches_and_never_shows_the_password() {
    let (certs, dir) = (certificates(), temp_dir("acl"));
    let (_server, tls_port) = tls_server(&dir, &certs, "no");
    let url = format!("rediss://app:{PASSWORD}@localhost:{tls_port}");
    let cache = trusting(QueryCache::builder().redis_url(&url).prefix("tls"), &certs).build().await.unwrap();
    until_reachable(&cache).await;
    let calls = AtomicUsize::new(0);
    assert_eq!(squared(&cache, &calls, 3).await, 9);
    assert_eq!(squared(&cache, &calls, 3).await, 9);
    assert_eq!(calls.load(SeqCst), 1, "a hit over TLS");
    cache.invalidate_tags(["n:3"]).await.unwrap();
    assert_eq!(squared(&cache, &calls, 3).await, 9);
    assert_eq!(calls.load(SeqCst), 2, "invalidated over TLS");
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    assert!(!format!("{cache:?}").contains(PASSWORD), "{cache:?}");

    // The system's roots do not trust the test's CA: every call still answers (from the
    // database), the failure is counted, and no message carries the password.
    let untrusted = QueryCache::builder().redis_url(&url).prefix("tls").build().await.unwrap();
    let other = AtomicUsize::new(0);
    assert_eq!(squared(&untrusted, &other, 4).await, 16);
    assert_eq!(other.load(SeqCst), 1);
    assert!(untrusted.stats().errors >= 1, "{:?}", untrusted.stats());
    let wrong = format!("rediss://app:{PASSWORD}@localhost:{tls_port}/not-a-db");
    match QueryCache::builder().redis_url(&wrong).build().await {
        Err(err) => assert!(!err.to_string().contains(PASSWORD), "{err}"),
        Ok(_) => panic!("a malformed URL is an error from build()"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_when_the_server_asks() {
    let (certs, dir) = (certificates(), temp_dir("mtls"));
    let (_server, tls_port) = tls_server(&dir, &certs, "yes");
    let url = format!("rediss://app:{PASSWORD}@127.0.0.1:{tls_port}");
    let with_cert = QueryCache::builder()
        .redis_url(&url)
        .prefix("mtls")
        .tls_root_certificate(certs.ca.clone())
        .tls_client_certificate(certs.client.0.clone(), certs.client.1.clone())
        .timeout(HANDSHAKE)
        .build()
        .await
        .unwrap();
    until_reachable(&with_cert).await;
    let calls = AtomicUsize::new(0);
    squared(&with_cert, &calls, 5).await;
    squared(&with_cert, &calls, 5).await;
    assert_eq!((calls.load(SeqCst), with_cert.stats().errors), (1, 0), "{:?}", with_cert.stats());

    let without = QueryCache::builder()
        .redis_url(&url)
        .prefix("mtls")
        .tls_root_certificate(certs.ca)
        .timeout(HANDSHAKE)
        .build()
        .await
        .unwrap();
    squared(&without, &calls, 5).await;
    assert_eq!(calls.load(SeqCst), 2, "refused without a client certificate: answered by the query");
    assert!(without.stats().errors >= 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// A Redis Cluster whose nodes take TLS clients (and talk TLS among themselves), the ACL user on
/// each: `rediss://` to any node reaches them all, entries spread over the masters, and a warm
/// hit is one `GET` on the entry's node (its tracked connection made over TLS too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_with_an_acl_user() {
    let (certs, dir) = (certificates(), temp_dir("cluster"));
    let tls_ports = std::sync::Mutex::new(Vec::new());
    let cluster = RedisCluster::start_with(3, 0, |_| {
        let tls_port = free_port();
        tls_ports.lock().unwrap().push(tls_port);
        let mut args = tls_args(&dir, &certs, "no", tls_port);
        args.extend(["--tls-cluster".to_owned(), "yes".to_owned()]);
        args
    });
    cluster.nodes.iter().for_each(add_user);
    let first = tls_ports.lock().unwrap()[0];
    let url = format!("rediss://app:{PASSWORD}@127.0.0.1:{first}");
    let builder = QueryCache::builder().redis_cluster([url]).prefix("tls-cluster");
    let cache = trusting(builder, &certs).build().await.unwrap();
    until_reachable(&cache).await;
    let calls = AtomicUsize::new(0);
    for n in 0..60 {
        assert_eq!(squared(&cache, &calls, n).await, n * n);
    }
    let holding: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|node| node.command(&["--scan", "--pattern", &cache.key_pattern()]).unwrap().lines().count())
        .collect();
    assert!(holding.iter().all(|keys| *keys > 0), "entries on every master: {holding:?}");
    cache.invalidate_tags(["n:7"]).await.unwrap();
    assert_eq!(squared(&cache, &calls, 7).await, 49);
    assert_eq!(calls.load(SeqCst), 61, "invalidated over TLS");
    // Warm hits: one `GET` on the entry's node, once its tracked connection is up.
    let key = cache.key("tls::squared", 0, &(7u64,)).unwrap();
    cluster.until_one_get(&key, || squared(&cache, &calls, 7)).await;
    assert_eq!((calls.load(SeqCst), cache.stats().errors), (61, 0), "{:?}", cache.stats());
    assert!(!format!("{cache:?}").contains(PASSWORD), "{cache:?}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}

//! The registry's metadata connection over TLS, with libpq's `sslmode`
//! meanings: a server that accepts only TLS, whose certificate names
//! `localhost` (not `127.0.0.1`) and is signed by a private CA, and one
//! database that also asks for a client certificate.

use std::time::Duration;

use sluice_registry::store::Store;
use sluice_tests::pki::TestCa;
use sluice_tests::postgres::{self, TestPostgres};

#[test]
fn tls_to_postgres_follows_libpq_sslmode() {
    if !postgres::available("tls_to_postgres_follows_libpq_sslmode") {
        return;
    }
    let database = TestPostgres::start();
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new("metadata CA");
    let ca_file = ca.write(pki.path(), "ca.pem");
    let stranger = TestCa::new("another CA").write(pki.path(), "other.pem");
    let server = ca.issue(pki.path(), "server", &["localhost"]);
    let client = ca.issue(pki.path(), "client", &["postgres"]);
    database.psql("CREATE DATABASE plain");
    database.psql("CREATE DATABASE mutual");
    database.psql("CREATE DATABASE either");
    database.enable_tls(
        &server.cert,
        &server.key,
        &ca_file,
        &[
            "local all all trust",
            "hostssl mutual all 127.0.0.1/32 trust clientcert=verify-ca",
            "host either all 127.0.0.1/32 trust",
            "hostssl all all 127.0.0.1/32 trust",
        ],
    );
    let port = database.port;
    let ip = |db: &str, query: &str| format!("postgres://postgres@127.0.0.1:{port}/{db}?{query}");
    let ca = ca_file.display();

    // Plain text is refused by the server; libpq's default (`prefer`)
    // encrypts without checking the certificate, as libpq does.
    let refused = connect(&ip("plain", "sslmode=disable")).err().unwrap();
    assert!(refused.contains("no encryption"), "{refused}");
    let store = connect(&ip("plain", "")).unwrap();
    assert_eq!(encrypted(&database), "true");
    drop(store);
    let store = connect(&ip("plain", "sslmode=require")).unwrap();
    assert_eq!(encrypted(&database), "true");
    drop(store);

    // verify-full checks the host name: the certificate names localhost.
    let wrong_name = connect(&ip("plain", &format!("sslmode=verify-full&sslrootcert={ca}")))
        .err()
        .unwrap();
    assert!(wrong_name.contains("not valid for name"), "{wrong_name}");
    let by_name = format!(
        "postgres://postgres@localhost:{port}/plain?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"
    );
    drop(connect(&by_name).unwrap());
    // verify-ca checks the chain only; another CA's trust is not enough,
    // nor the system's (verify-full's without sslrootcert).
    drop(connect(&ip("plain", &format!("sslmode=verify-ca&sslrootcert={ca}"))).unwrap());
    let stranger = format!("sslmode=verify-ca&sslrootcert={}", stranger.display());
    let untrusted = connect(&ip("plain", &stranger)).err().unwrap();
    assert!(untrusted.contains("invalid peer certificate"), "{untrusted}");
    let system = by_name.replace(&format!("&sslrootcert={ca}"), "");
    let unknown = connect(&system).err().unwrap();
    assert!(
        unknown.contains("UnknownIssuer") || unknown.contains("no CA certificates"),
        "{unknown}"
    );
    // libpq: require with a root certificate checks the chain too...
    let required = format!(
        "sslmode=require&sslrootcert={}",
        pki.path().join("other.pem").display()
    );
    let unchecked = connect(&ip("plain", &required)).err().unwrap();
    assert!(unchecked.contains("UnknownIssuer"), "{unchecked}");
    // ...and prefer then falls back to plain text, as libpq does, where
    // the server allows it.
    let preferred = required.replace("sslmode=require", "sslmode=prefer");
    assert!(
        connect(&ip("plain", &preferred)).is_err(),
        "only TLS reaches 'plain'"
    );
    let store = connect(&ip("either", &preferred)).unwrap();
    assert_eq!(encrypted(&database), "false");
    drop(store);

    // A database that asks for a client certificate.
    let anonymous = connect(&ip("mutual", "sslmode=require")).err().unwrap();
    assert!(anonymous.contains("certificate"), "{anonymous}");
    let with_cert = format!(
        "sslmode=verify-ca&sslrootcert={ca}&sslcert={}&sslkey={}",
        client.cert.display(),
        client.key.display()
    );
    let store = connect(&ip("mutual", &with_cert)).unwrap();
    assert_eq!(encrypted(&database), "true");
    drop(store);
}

/// A store on `url` (its schema migrated), or why not.
fn connect(url: &str) -> Result<Store, String> {
    let unused = tempfile::tempdir().unwrap();
    Store::connect(
        Some(url),
        &unused.path().join("registry.db"),
        Duration::from_secs(5),
    )
    .map_err(|err| err.to_string())
}

/// Whether the registry's connection open now is encrypted ("true",
/// "false"): the newest one, as those closed before it may linger a moment.
fn encrypted(database: &TestPostgres) -> String {
    database.psql(
        "SELECT ssl::text FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE application_name = 'sluice-registry' ORDER BY backend_start DESC LIMIT 1",
    )
}

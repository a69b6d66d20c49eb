//! Security at both listeners, over real sockets: HTTPS with a certificate
//! reloaded while serving, mutual TLS on the registry's admin API (for the
//! CLI's client and a remote gateway's), the embedded gateway following its
//! registry over TLS; predict tokens and their rate limits. [`privilege`]:
//! what no role may make the registry do, and each role's refusals.

mod privilege;

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use sluice::command::{Cli, Command};
use sluice::embedded::{Embedded, EngineInspector};
use sluice_common::tls::TlsFiles;
use sluice_gateway::Server;
use sluice_gateway::backend::EngineOptions;
use sluice_gateway::config::ServeConfig;
use sluice_gateway::server::access::add_token;
use sluice_registry::auth::{Caller, Role};
use sluice_registry::{Registry, RegistryConfig};
use sluice_registry_client::{ClientError, ClientTls, RegistryClient};
use sluice_tests::pki::{Issued, TestCa};
use sluice_tests::{Options, TempDir, TestGateway, TestRepository, example_model, ort_library, read_json};

const RELOAD: Duration = Duration::from_millis(100);

async fn ephemeral() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Retries `probe` until it holds (or 10 s).
async fn eventually(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(client: &reqwest::Client, url: &str) -> Result<u16, reqwest::Error> {
    client
        .get(url)
        .send()
        .await
        .map(|response| response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_https_and_reloads_its_certificate() {
    let pki = TempDir::new().unwrap();
    let (first_ca, second_ca) = (TestCa::new("first"), TestCa::new("second"));
    let served = first_ca.issue(pki.path(), "gateway", &["localhost", "127.0.0.1"]);
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let mut config = ServeConfig::for_repository(repository.path());
    config.settings.poll_interval = Duration::from_millis(50);
    config.settings.engines.ort_library_opt = Some(ort_library());
    config.settings.tls_opt = Some(TlsFiles {
        cert: served.cert.clone(),
        key: served.key.clone(),
        client_ca_opt: None,
        reload_interval: RELOAD,
    });
    let server = Server::start(config, ephemeral().await).await.unwrap();
    let base = format!("https://{}", server.addr);
    let ready = format!("{base}/v2/health/ready");
    let trusts_first = first_ca.client();
    eventually("the gateway is ready over HTTPS", async || {
        status(&trusts_first, &ready).await.ok() == Some(200)
    })
    .await;
    let request =
        json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": vec![1.0; 64]}]});
    let response = trusts_first
        .post(format!("{base}/v2/models/digits/infer"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Plain HTTP on the HTTPS port gets no HTTP answer, and the failed
    // handshake is counted.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        status(&plain, &format!("http://{}/v2/health/live", server.addr))
            .await
            .is_err()
    );
    // A client that trusts another CA refuses the certificate.
    assert!(status(&second_ca.client(), &ready).await.is_err());

    // A broken renewal is refused: the old certificate keeps serving.
    // (Written aside and renamed, as a renewal is: a reload never reads a
    // half-written file.)
    let broken = pki.path().join("broken.crt");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    std::fs::rename(&broken, &served.cert).unwrap();
    let metrics_url = format!("{base}/metrics");
    eventually("the failed reload is counted", async || {
        let Ok(response) = trusts_first.get(&metrics_url).send().await else {
            return false;
        };
        let text = response.text().await.unwrap_or_default();
        text.contains("sluice_tls_reloads_total{result=\"error\"}")
            && text.contains("sluice_tls_handshake_failures_total")
    })
    .await;
    assert_eq!(status(&first_ca.client(), &ready).await.ok(), Some(200));

    // A renewed certificate from another CA serves new connections.
    second_ca.issue(pki.path(), "gateway", &["localhost", "127.0.0.1"]);
    let trusts_second = second_ca.client();
    eventually("the renewed certificate serves", async || {
        status(&trusts_second, &ready).await.ok() == Some(200)
    })
    .await;
    assert!(status(&first_ca.client(), &ready).await.is_err());
    server.shutdown().await.unwrap();
}

/// A standalone registry asking for client certificates of `clients`, with
/// an admin token; `stranger` is a CA it does not trust.
struct MutualTls {
    dir: TempDir,
    clients: TestCa,
    stranger: TestCa,
    registry: Registry,
    /// By name: the certificate names localhost, not 127.0.0.1.
    url: String,
    token: String,
    server_ca_file: std::path::PathBuf,
}

impl MutualTls {
    async fn start() -> MutualTls {
        let dir = TempDir::new().unwrap();
        let (servers, clients, stranger) = (
            TestCa::new("servers"),
            TestCa::new("clients"),
            TestCa::new("stranger"),
        );
        let served = servers.issue(dir.path(), "registry", &["localhost"]);
        let mut config = RegistryConfig::new(dir.path().join("data"));
        config.tls_opt = Some(TlsFiles {
            cert: served.cert,
            key: served.key,
            client_ca_opt: Some(clients.write(dir.path(), "clients-ca.pem")),
            reload_interval: RELOAD,
        });
        let token = "sluice_test_admin".to_string();
        config.process_tokens.push((
            token.clone(),
            Caller {
                actor: "ops".into(),
                role: Role::Admin,
            },
        ));
        let inspector = EngineInspector::new(&EngineOptions::default());
        let registry = Registry::start(config, ephemeral().await, std::sync::Arc::new(inspector))
            .await
            .unwrap();
        MutualTls {
            url: format!("https://localhost:{}", registry.addr.port()),
            server_ca_file: servers.write(dir.path(), "servers-ca.pem"),
            dir,
            clients,
            stranger,
            registry,
            token,
        }
    }

    /// A client of the registry showing `identity_opt`, with `token_opt`.
    fn client(&self, identity_opt: Option<Issued>, token_opt: Option<String>) -> RegistryClient {
        let tls = ClientTls {
            ca_opt: Some(self.server_ca_file.clone()),
            identity_opt: identity_opt.map(|identity| (identity.cert, identity.key)),
        };
        RegistryClient::with_tls(&self.url, token_opt, &tls).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_asks_for_a_client_certificate_under_mutual_tls() {
    let tls = MutualTls::start().await;
    let ops = || tls.clients.issue(tls.dir.path(), "ops", &["ops"]);
    let intruder = tls.stranger.issue(tls.dir.path(), "intruder", &["ops"]);

    let whoami = tls
        .client(Some(ops()), Some(tls.token.clone()))
        .whoami()
        .await
        .unwrap();
    assert_eq!(whoami.actor, "ops");
    // No client certificate, or one of another CA: no TLS session at all.
    for identity_opt in [None, Some(intruder)] {
        let refused = tls
            .client(identity_opt, Some(tls.token.clone()))
            .whoami()
            .await
            .unwrap_err();
        assert!(matches!(refused, ClientError::Unreachable { .. }), "{refused:?}");
    }
    // The certificate is not a token: without one, 401.
    let unauthenticated = tls.client(Some(ops()), None).whoami().await.unwrap_err();
    assert!(
        matches!(unauthenticated, ClientError::Api { status: 401, .. }),
        "{unauthenticated:?}"
    );
    tls.registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_gateway_follows_a_mutual_tls_registry_with_its_client_certificate() {
    let tls = MutualTls::start().await;
    // As `sluice serve --registry URL --registry-ca-cert --registry-client-cert
    // --registry-client-key` builds it.
    let gateway = async |name: &str, identity: Issued| {
        let client = tls.client(Some(identity), Some(tls.token.clone()));
        let config = ServeConfig::for_registry(client, tls.dir.path().join(name));
        Server::start(config, ephemeral().await).await.unwrap()
    };
    let ours = gateway("ours", tls.clients.issue(tls.dir.path(), "gw", &["gw"])).await;
    let rogue = gateway("rogue", tls.stranger.issue(tls.dir.path(), "rogue", &["gw"])).await;
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = |server: &Server| format!("http://{}/v2/health/ready", server.addr);
    // Ready once it has read the deployments (none) over mutual TLS.
    eventually("the gateway with a client certificate is ready", async || {
        status(&plain, &ready(&ours)).await.ok() == Some(200)
    })
    .await;
    // One of another CA gets no TLS session, so it never reads them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status(&plain, &ready(&rogue)).await.unwrap(), 503);
    ours.shutdown().await.unwrap();
    rogue.shutdown().await.unwrap();
    tls.registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_serve_with_tls_follows_its_embedded_registry_over_https() {
    let dir = TempDir::new().unwrap();
    let ca = TestCa::new("ops");
    // A certificate without 127.0.0.1 in it, as real ones are: the
    // in-process client pins the certificate instead of checking names.
    let served = ca.issue(dir.path(), "sluice", &["sluice.example"]);
    let data_dir = dir.path().join("data");
    let cli = Cli::try_parse_from([
        "sluice",
        "serve",
        "--demo",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--tls-cert",
        served.cert.to_str().unwrap(),
        "--tls-key",
        served.key.to_str().unwrap(),
        "--ort-library",
        ort_library().to_str().unwrap(),
    ])
    .unwrap();
    let Command::Serve(args) = cli.command else {
        panic!("parsed serve");
    };
    let (sluice::command::ServeMode::Embedded { registry, demo, .. }, cache_dir, settings) =
        args.into_parts(None).unwrap()
    else {
        panic!("no registry given: embedded");
    };
    let embedded = Embedded::start(
        *registry,
        settings,
        cache_dir,
        ephemeral().await,
        ephemeral().await,
        demo,
    )
    .await
    .unwrap();
    assert!(embedded.registry.url().starts_with("https://"));
    let client = ca
        .client_builder()
        .resolve("sluice.example", embedded.gateway.addr)
        .build()
        .unwrap();
    let base = format!("https://sluice.example:{}", embedded.gateway.addr.port());
    eventually("the demo models serve over HTTPS", async || {
        status(&client, &format!("{base}/v2/models/credit_risk/ready"))
            .await
            .ok()
            == Some(200)
    })
    .await;
    embedded.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_tokens_guard_the_models_they_name_with_a_rate_limit() {
    let dir = TempDir::new().unwrap();
    let tokens = dir.path().join("predict-tokens.toml");
    // A rate so low that no second slot opens during the test.
    let shop = add_token(&tokens, "shop", &["digits".into()], Some(0.01), Some(3)).unwrap();
    let fraud = add_token(&tokens, "fraud-team", &["fraud".into()], None, None).unwrap();
    assert!(
        !std::fs::read_to_string(&tokens).unwrap().contains(&shop),
        "stored in clear"
    );
    let repository = TestRepository::new()
        .with_model("digits", 1, &example_model("digits"))
        .with_model("credit_risk", 1, &example_model("credit_risk"));
    let options = Options {
        predict_tokens_opt: Some(tokens),
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    let digits =
        json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": vec![1.0; 64]}]});
    let infer = |token_opt: Option<&str>| {
        let mut request = gateway
            .client
            .post(gateway.url("/v2/models/digits/infer"))
            .json(&digits);
        if let Some(token) = token_opt {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let missing = infer(None).await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let (code, body) = read_json(missing).await;
    assert_eq!(code, 401);
    assert!(
        body["error"].as_str().unwrap().contains("needs a predict token"),
        "{body}"
    );
    assert_eq!(read_json(infer(Some("sluice_guess")).await.unwrap()).await.0, 401);
    let (code, body) = read_json(infer(Some(&fraud)).await.unwrap()).await;
    assert_eq!(code, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("may not call model digits"),
        "{body}"
    );

    // The versioned route is guarded the same way.
    let versioned = gateway
        .client
        .post(gateway.url("/v2/models/digits/versions/1/infer"))
        .json(&digits)
        .send()
        .await
        .unwrap();
    assert_eq!(read_json(versioned).await.0, 401);

    // The burst of 3 passes; the fourth is over the rate of one per 100 s.
    for _ in 0..3 {
        assert_eq!(read_json(infer(Some(&shop)).await.unwrap()).await.0, 200);
    }
    let limited = infer(Some(&shop)).await.unwrap();
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((90..=100).contains(&retry_after), "Retry-After: {retry_after}");
    let (code, body) = read_json(limited).await;
    assert_eq!(code, 429);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("shop is over its rate limit"),
        "{body}"
    );

    // Models no token names stay open, and so do health and metadata.
    let credit = sluice_tests::credit_applicants(1, 0.0).remove(0);
    assert_eq!(
        gateway.post_json("/v2/models/credit_risk/infer", &credit).await.0,
        200
    );
    assert_eq!(gateway.get("/v2/models/digits").await.0, 200);
    assert_eq!(gateway.get("/v2/health/ready").await.0, 200);

    // Over gRPC the token is `authorization` metadata, refused alike.
    let mut grpc = crate::grpc::client_of(&gateway).await;
    let call = |token_opt: Option<&str>| {
        let message = crate::grpc::from_json("digits", &digits);
        let mut request = tonic::Request::new(message);
        if let Some(token) = token_opt {
            let value = format!("Bearer {token}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        request
    };
    let status = grpc.model_infer(call(None)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = grpc.model_infer(call(Some(&fraud))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("may not call model digits"),
        "{status:?}"
    );
    let status = grpc.model_infer(call(Some(&shop))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let retry_after: u64 = status
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((90..=100).contains(&retry_after), "retry-after: {retry_after}");

    crate::grpc::core_path::an_anonymous_message_is_not_read_where_every_model_needs_a_token().await;

    let metrics = gateway.metrics().await;
    for line in [
        "sluice_predict_auth_refused_total{reason=\"missing\"} 4",
        "sluice_predict_auth_refused_total{reason=\"unknown\"} 1",
        "sluice_predict_auth_refused_total{reason=\"forbidden\"} 2",
        "sluice_rate_limited_total{token=\"shop\"} 2",
    ] {
        assert!(metrics.contains(line), "no '{line}' in the metrics");
    }
    assert!(!metrics.contains(&shop) && !metrics.contains(&fraud));
}

/// Every write route of the registry, read from its OpenAPI document: the
/// router registers each route with its description, so a new route is
/// covered the day it is added.
fn registry_write_routes() -> Vec<(reqwest::Method, String)> {
    let document = sluice_registry::api::document();
    let mut routes = Vec::new();
    for (path, item) in &document.paths.paths {
        let path = path
            .replace("{model}", "credit_risk")
            .replace("{version}", "1")
            .replace("{id}", "1")
            .replace("{sha256}", &"0".repeat(64))
            .replace("{alias}", "champion")
            .replace("{name}", "card")
            .replace("{action}", "pause");
        assert!(!path.contains('{'), "a parameter of {path} has no value here");
        for (operation, method) in [
            (&item.post, reqwest::Method::POST),
            (&item.put, reqwest::Method::PUT),
            (&item.patch, reqwest::Method::PATCH),
            (&item.delete, reqwest::Method::DELETE),
        ] {
            if operation.is_some() {
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registry_write_refuses_a_viewer_and_an_anonymous_caller() {
    let registry = sluice_tests::TestRegistry::start().await;
    registry
        .register("credit_risk", &example_model("credit_risk"), &[])
        .await;
    let routes = registry_write_routes();
    assert!(routes.len() >= 20, "found only {routes:?}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (method, path) in routes {
        let url = format!("{}{path}", registry.url());
        for (token_opt, expected) in [(None, 401), (Some(registry.token("vic")), 403)] {
            let mut request = client.request(method.clone(), &url).json(&json!({}));
            if let Some(token) = &token_opt {
                request = request.bearer_auth(token);
            }
            let (code, body) = read_json(request.send().await.unwrap()).await;
            assert_eq!(code, expected, "{method} {path}: {body}");
            assert!(body["error"].is_string(), "{method} {path}: {body}");
        }
    }
}

/// A TLS gateway serving digits whose clients have `header_read` to finish
/// a handshake; `dir` holds its certificate.
async fn tls_gateway(dir: &Path, repository: &TestRepository, header_read: Duration) -> Server {
    let served = TestCa::new("ops").issue(dir, "gateway", &["localhost"]);
    let mut config = ServeConfig::for_repository(repository.path());
    config.settings.engines.ort_library_opt = Some(ort_library());
    config.settings.limits.connections.header_read_timeout = header_read;
    config.settings.tls_opt = Some(TlsFiles {
        cert: served.cert,
        key: served.key,
        client_ca_opt: None,
        reload_interval: Duration::from_secs(10),
    });
    Server::start(config, ephemeral().await).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_is_cut_and_holds_no_shutdown() {
    use tokio::io::AsyncReadExt;
    let dir = TempDir::new().unwrap();
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));

    // Connected, and never a ClientHello: cut at the header read timeout.
    let quick = tls_gateway(dir.path(), &repository, Duration::from_millis(300)).await;
    let mut silent = tokio::net::TcpStream::connect(quick.addr).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut answer)).await;
    assert!(answer.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    quick.shutdown().await.unwrap();

    // With a long timeout, the same client does not hold a shutdown's drain.
    let slow = tls_gateway(dir.path(), &repository, Duration::from_secs(60)).await;
    let _silent = tokio::net::TcpStream::connect(slow.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    slow.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

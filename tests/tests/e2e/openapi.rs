//! The OpenAPI documents as each listener serves them, against the files
//! committed under docs/openapi (which `sluice`'s reference test holds to
//! the code), and the console's headers and its switch.

use sluice_tests::registry::{RegistryOptions, TestRegistry};
use sluice_tests::{TestGateway, TestRepository, example_model, repo_root};

fn committed(name: &str) -> serde_json::Value {
    let path = repo_root().join("docs/openapi").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

async fn served(url: String) -> serde_json::Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn each_listener_serves_its_committed_document_without_a_token() {
    let registry = TestRegistry::start().await;
    let document = served(format!("{}/openapi.json", registry.url())).await;
    assert_eq!(document, committed("registry.json"));
    assert_eq!(document["openapi"], "3.1.0");
    // The console's client finds its calls by these ids.
    let path = &document["paths"]["/api/v1/transitions/{id}/approve"]["post"];
    assert_eq!(path["operationId"], "approve_transition");
    assert_eq!(document["security"][0]["bearer"], serde_json::json!([]));

    let repository = TestRepository::new().with_model("credit_risk", 1, &example_model("credit_risk"));
    let gateway = TestGateway::start(&repository).await;
    let document = served(gateway.url("/openapi.json")).await;
    assert_eq!(document, committed("v2.json"));
    assert_eq!(
        document["paths"]["/v2/models/{model}/infer"]["post"]["operationId"],
        "infer"
    );
}

#[tokio::test]
async fn the_console_is_served_with_its_policy_and_turned_off_by_the_flag() {
    let registry = TestRegistry::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = client
        .get(format!("{}/console", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/console/");
    for (path, content_type) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let response = client
            .get(format!("{}{path}", registry.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(
            !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
            "{policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    // A page of another origin cannot call the API with a token: the
    // preflight its `Authorization` header needs is not granted.
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/models", registry.url()),
        )
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(
        preflight.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        preflight.headers()
    );
    // The page is the app's frame alone: no data, no inline script.
    let page = client
        .get(format!("{}/console/", registry.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<script type="module" src="app.js"></script>"#),
        "{page}"
    );
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    let unknown = client
        .get(format!("{}/console/secrets.toml", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let off = TestRegistry::start_with(RegistryOptions {
        no_console: true,
        ..RegistryOptions::default()
    })
    .await;
    let response = client
        .get(format!("{}/console/", off.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // The API and its document stay.
    let response = client
        .get(format!("{}/openapi.json", off.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

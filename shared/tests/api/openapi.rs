use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::spawn_app;

async fn document(app: &crate::helpers::TestApp) -> Value {
    app.client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const EXPECTED: &[(&str, &str)] = &[
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/demo/status"),
    ("post", "/auth/guest"),
    ("post", "/auth/login"),
    ("post", "/auth/admin"),
    ("post", "/auth/logout"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/v1/admin/audit"),
    ("get", "/v1/admin/audit/verify"),
    ("get", "/v1/admin/ehr"),
    ("post", "/v1/transcriptions"),
    ("post", "/v1/uploads"),
    ("get", "/v1/uploads/{id}"),
    ("post", "/v1/uploads/{id}/parts"),
    ("put", "/v1/uploads/{id}/parts/{number}"),
    ("post", "/v1/uploads/{id}/complete"),
    ("post", "/v1/audio/transcriptions"),
    ("post", "/v1/audio/translations"),
    ("get", "/v1/transcriptions"),
    ("get", "/v1/transcriptions/{id}"),
    ("delete", "/v1/transcriptions/{id}"),
    ("get", "/v1/transcriptions/{id}/transcript"),
    ("get", "/v1/vocabulary"),
    ("put", "/v1/vocabulary"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("post", "/v1/transcriptions/{id}/ehr"),
    ("get", "/v1/transcriptions/{id}/ehr"),
    ("patch", "/v1/transcriptions/{id}"),
    ("get", "/v1/transcriptions/{id}/versions"),
    ("post", "/v1/transcriptions/{id}/structure"),
    ("get", "/v1/ehr/patients"),
    ("get", "/v1/ehr/patients/{id}/encounters"),
    ("get", "/v1/ehr/link"),
    ("post", "/v1/ehr/link"),
    ("delete", "/v1/ehr/link"),
    ("post", "/v1/ehr/link/complete"),
];

#[tokio::test]
async fn the_document_lists_every_route_and_every_listed_route_exists() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);

    for (method, path) in EXPECTED {
        let url = app.url(&path.replace("{id}", &uuid::Uuid::now_v7().to_string()));
        let response = app
            .client
            .request(method.to_uppercase().parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("route_not_found") && status != 405,
            "{method} {path}: {status} {body}"
        );
    }

    // Authenticated operations say so; public ones don't.
    assert!(doc["paths"]["/v1/transcriptions/{id}"]["get"]["security"].is_array());
    assert!(
        doc["paths"]["/health/live"]["get"]
            .get("security")
            .is_none()
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_docs_page_is_self_contained() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("openapi.json"));
    assert!(!html.contains("https://"), "no CDN or remote assets");
}

#[tokio::test]
async fn docs_can_be_turned_off() {
    let app = crate::helpers::spawn_app_with(&[("ENABLE_DOCS", "false")]).await;
    for path in ["/openapi.json", "/docs"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    app.assert_live().await;
}

#[tokio::test]
async fn the_web_page_is_served_with_its_own_policy_and_its_config() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    // A deployed page talks to its own server only: a link naming another API cannot make
    // the browser send it anything (security review, item 2).
    assert!(policy.contains("connect-src 'self';"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"app.js\""));
    for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(attribute),
            "a third-party resource: {attribute}"
        );
    }
    for asset in ["/app.js", "/app.css", "/config.js"] {
        let response = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let default = app
        .client
        .get(app.url("/config.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        default.contains("window.__MMT_CONFIG = window.__MMT_CONFIG || {}"),
        "{default}"
    );

    let configured = crate::helpers::spawn_app_with(&[
        ("WEB_API_BASE_URL", "https://api.example.org"),
        ("WEB_PRODUCTION_API_BASE_URL", "https://prod.example.org"),
        ("LIVE_DICTATION_URL", "wss://live.example.org/v1/stream"),
    ])
    .await;
    let policy = configured
        .client
        .get(configured.url("/"))
        .send()
        .await
        .unwrap();
    let policy = policy.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        policy.contains(
            "connect-src 'self' https://api.example.org https://prod.example.org wss://live.example.org;"
        ),
        "the configured APIs, where the page dictates live, and nothing else: {policy}"
    );
    // A demo's "Change API" box may point the page anywhere.
    let demo = crate::helpers::spawn_app_with(&[("DEMO_MODE", "true")]).await;
    let policy = demo.client.get(demo.url("/")).send().await.unwrap();
    let policy = policy.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        policy.contains("connect-src 'self' http: https: ws: wss:;"),
        "{policy}"
    );
    let js = configured
        .client
        .get(configured.url("/config.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        js.contains("\"API_BASE_URL\":\"https://api.example.org\""),
        "{js}"
    );
    assert!(
        js.contains("\"PRODUCTION_API_BASE_URL\":\"https://prod.example.org\""),
        "{js}"
    );

    let off = crate::helpers::spawn_app_with(&[("SERVE_WEB_PAGE", "false")]).await;
    assert_eq!(
        off.client.get(off.url("/")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn every_schema_the_document_refers_to_is_in_it() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    fn refs(value: &Value, found: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner.as_str()) {
                        ("$ref", Some(target)) => {
                            found.insert(target.to_owned());
                        }
                        _ => refs(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }
    let mut found = BTreeSet::new();
    refs(&doc, &mut found);
    assert!(found.len() > 10, "{found:?}");
    let missing: Vec<&String> = found
        .iter()
        .filter(|target| {
            let name = target.trim_start_matches("#/components/schemas/");
            doc["components"]["schemas"].get(name).is_none()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "referred to but not described: {missing:?}"
    );
    for name in [
        "Status",
        "EngineKind",
        "Segment",
        "AuditEvent",
        "NoteSection",
    ] {
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{name} is described"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["Status"]["enum"],
        serde_json::json!([
            "awaiting_upload",
            "queued",
            "processing",
            "completed",
            "failed"
        ])
    );
}

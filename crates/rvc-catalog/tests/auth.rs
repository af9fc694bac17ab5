//! API keys on rvc-catalog (issue #15): each scope boundary over HTTP and gRPC, revocation
//! within the cache bound, rate limits, AUTH_MODE=disabled, the open endpoints and the OpenAPI
//! document's security. Real Postgres and Redis; recognition's backends are ports where
//! nothing listens (recognition then answers its documented 503).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use clap::Parser;
use common::*;
use rvc_auth::{AuthMode, RateSpec, Scope};
use rvc_catalog::{Config, ReaderOptions};
use rvc_proto::catalog::product_service_client::ProductServiceClient;
use rvc_proto::catalog::recognition_service_client::RecognitionServiceClient;
use rvc_proto::catalog::{GetProductsInfoRequest, RecognizeRequest};
use rvc_test_support::TestDb;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn config(db: &TestDb, prefix: &str) -> Config {
    let mut c = Config::parse_from(["rvc-catalog"]);
    c.grpc_addr = "127.0.0.1:0".into();
    c.http_addr = "127.0.0.1:0".into();
    c.http_workers = 2;
    c.db.database_url = db.url.clone().into();
    c.cache.redis_url = Some(redis_url());
    c.cache.cache_key_prefix = prefix.to_owned();
    c.auth.auth_mode = AuthMode::Enforce;
    // nothing listens there: recognition answers 503 once a request passes the key check
    c.recognition.ml_service_url =
        format!("http://127.0.0.1:{}", rvc_test_support::net::free_port());
    c.recognition.qdrant.qdrant_url =
        format!("http://127.0.0.1:{}", rvc_test_support::net::free_port());
    c
}

async fn start(cfg: &Config) -> rvc_catalog::Running {
    let cache = rvc_catalog::cache_from(&cfg.cache).await.unwrap();
    rvc_catalog::start(
        cfg,
        cache,
        ReaderOptions::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../rvc-ml-service/tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

struct Http {
    client: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
    body: serde_json::Value,
}

impl Http {
    fn new(svc: &rvc_catalog::Running) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: format!("http://{}", svc.http_addr),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, key: Option<&str>) -> Answer {
        let req = match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        let r = req.send().await.unwrap();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let content_type = header("content-type").unwrap_or_default();
        let www_authenticate = header("www-authenticate");
        let retry_after = header("retry-after");
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        Answer {
            status,
            content_type,
            www_authenticate,
            retry_after,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    }

    async fn list(&self, key: Option<&str>) -> Answer {
        self.send(
            self.client.get(format!("{}/api/v1/products", self.base)),
            key,
        )
        .await
    }

    async fn batch_get(&self, key: Option<&str>) -> Answer {
        self.send(
            self.client
                .post(format!("{}/api/v1/products:batchGet", self.base))
                .json(&serde_json::json!({ "product_ids": [uuid::Uuid::now_v7()] })),
            key,
        )
        .await
    }

    async fn recognize(&self, key: Option<&str>, image: Vec<u8>) -> Answer {
        let form = reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(image).file_name("photo.jpg"),
        );
        self.send(
            self.client
                .post(format!("{}/api/v1/recognize", self.base))
                .multipart(form),
            key,
        )
        .await
    }
}

fn assert_problem(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    assert_eq!(a.content_type, "application/problem+json", "{what}");
    assert_eq!(a.body["status"], status, "{what}");
    assert!(
        a.body["type"].as_str().unwrap().starts_with("/problems/"),
        "{what}: {}",
        a.body
    );
}

#[tokio::test]
async fn http_scope_boundaries_on_reads_and_recognition() {
    let db = TestDb::new().await;
    let svc = start(&config(&db, &prefix())).await;
    let http = Http::new(&svc);
    let read = db.api_key(&[Scope::CatalogRead]).await;
    let write = db.api_key(&[Scope::CatalogWrite]).await;
    let recognize = db.api_key(&[Scope::Recognize]).await;
    let admin = db.admin_key().await;
    let not_an_image = b"this is not a photo of anything at all".to_vec();
    let photo = fixture("cat.jpg");

    // no key, or a key that does not exist: 401 problem+json with the RFC 6750 challenge
    for (key, what) in [
        (None, "no key"),
        (
            Some("rvc_aaaaaaaaaaaa_0000000000000000000000000000000000000000"),
            "unknown key",
        ),
        (Some("not-even-a-key"), "malformed key"),
    ] {
        for a in [
            http.list(key).await,
            http.batch_get(key).await,
            http.recognize(key, photo.clone()).await,
        ] {
            assert_problem(&a, 401, what);
            assert!(
                a.www_authenticate.as_deref().unwrap().starts_with("Bearer"),
                "{what}"
            );
        }
    }

    // a catalog:write key cannot read nor recognise
    for a in [
        http.list(Some(&write)).await,
        http.batch_get(Some(&write)).await,
        http.recognize(Some(&write), photo.clone()).await,
    ] {
        assert_problem(&a, 403, "write key");
        assert!(a
            .www_authenticate
            .as_deref()
            .unwrap()
            .contains("insufficient_scope"));
    }

    // a catalog:read key reads, and cannot recognise
    assert_eq!(http.list(Some(&read)).await.status, 200);
    let b = http.batch_get(Some(&read)).await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["products"], serde_json::json!([]));
    let a = http.recognize(Some(&read), photo.clone()).await;
    assert_problem(&a, 403, "read key recognising");
    assert!(
        a.body["detail"].as_str().unwrap().contains("recognize"),
        "{}",
        a.body
    );

    // a recognize key recognises (its request reaches the handler: 415 for a non-image, and
    // the documented 503 while the ML service is unreachable), and cannot read
    let a = http.recognize(Some(&recognize), not_an_image.clone()).await;
    assert_problem(&a, 415, "recognize key, not an image");
    let a = http.recognize(Some(&recognize), photo.clone()).await;
    assert_problem(&a, 503, "recognize key, ML service down");
    let detail = a.body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("127.0.0.1") && !detail.contains("tcp"),
        "internal error text leaked: {detail}"
    );
    assert_problem(
        &http.list(Some(&recognize)).await,
        403,
        "recognize key reading",
    );
    assert_problem(
        &http.batch_get(Some(&recognize)).await,
        403,
        "recognize key reading",
    );

    // admin holds every scope
    assert_eq!(http.list(Some(&admin)).await.status, 200);
    assert_eq!(http.batch_get(Some(&admin)).await.status, 200);
    assert_problem(
        &http.recognize(Some(&admin), not_an_image).await,
        415,
        "admin recognising",
    );

    // health, metrics, the OpenAPI document and Swagger UI stay open
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api-docs/openapi.json",
        "/swagger/index.html",
    ] {
        let r = http
            .client
            .get(format!("{}{path}", http.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    svc.stop().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_the_cache_ttl() {
    let db = TestDb::new().await;
    let mut cfg = config(&db, &prefix());
    cfg.auth.auth_cache_ttl_secs = 1;
    let svc = start(&cfg).await;
    let http = Http::new(&svc);
    let key = db.api_key(&[Scope::CatalogRead, Scope::Recognize]).await;
    let other = db.api_key(&[Scope::CatalogRead]).await;
    assert_eq!(http.list(Some(&key)).await.status, 200); // now cached as valid
    let id = key.split('_').nth(1).unwrap().to_owned();
    let c = db.pool.get().await.unwrap();
    assert!(rvc_store::api_keys::revoke(&**c, &id)
        .await
        .unwrap()
        .is_some());
    let revoked_at = Instant::now();
    // refused within the stated bound (the cache TTL), with a margin for the request itself
    let a = eventually("revocation", Duration::from_secs(3), || {
        let http = &http;
        let key = key.as_str();
        async move {
            let a = http.list(Some(key)).await;
            (a.status != 200).then_some(a)
        }
    })
    .await;
    assert!(revoked_at.elapsed() < Duration::from_secs(3));
    assert_problem(&a, 401, "revoked key");
    assert!(
        a.body["detail"].as_str().unwrap().contains("revoked"),
        "{}",
        a.body
    );
    assert_problem(
        &http.recognize(Some(&key), fixture("cat.jpg")).await,
        401,
        "revoked key recognising",
    );
    let mut client = ProductServiceClient::connect(format!("http://{}", svc.grpc_addr))
        .await
        .unwrap();
    let err = client
        .get_products_info(with_key(
            GetProductsInfoRequest {
                product_ids: vec![],
            },
            Some(&key),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    // other keys are unaffected
    assert_eq!(http.list(Some(&other)).await.status, 200);
    svc.stop().await;
}

fn with_key<T>(msg: T, key: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(k) = key {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    req
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn grpc_codes_for_each_scope() {
    let db = TestDb::new().await;
    let id = insert_product(&db, "GR-1", 249).await;
    let svc = start(&config(&db, &prefix())).await;
    let read = db.api_key(&[Scope::CatalogRead]).await;
    let write = db.api_key(&[Scope::CatalogWrite]).await;
    let recognize = db.api_key(&[Scope::Recognize]).await;
    let admin = db.admin_key().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", svc.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut products = ProductServiceClient::new(channel.clone());
    let mut recognition = RecognitionServiceClient::new(channel.clone());
    let info = |key: Option<&str>| {
        with_key(
            GetProductsInfoRequest {
                product_ids: vec![id.to_string()],
            },
            key,
        )
    };
    let rec = |key: Option<&str>| {
        with_key(
            RecognizeRequest {
                image: Vec::new(),
                top_k: 0,
                min_score: None,
            },
            key,
        )
    };

    let unknown = "rvc_aaaaaaaaaaaa_0000000000000000000000000000000000000000";
    for key in [None, Some(unknown), Some("Basic abc")] {
        assert_eq!(
            code(products.get_products_info(info(key)).await),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(recognition.recognize(rec(key)).await),
            tonic::Code::Unauthenticated
        );
    }
    for key in [&write, &recognize] {
        let err = products
            .get_products_info(info(Some(key.as_str())))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
        assert!(err.message().contains("catalog:read"), "{err}");
    }
    for key in [&write, &read] {
        let err = recognition
            .recognize(rec(Some(key.as_str())))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
        assert!(err.message().contains("recognize"), "{err}");
    }
    for key in [&read, &admin] {
        let r = products
            .get_products_info(info(Some(key.as_str())))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.products.len(), 1);
        assert_eq!(r.products[0].price_minor, 249);
    }
    // past the key check, an empty image is the handler's INVALID_ARGUMENT
    for key in [&recognize, &admin] {
        assert_eq!(
            code(recognition.recognize(rec(Some(key.as_str()))).await),
            tonic::Code::InvalidArgument
        );
    }
    // a photo while the ML service is down: UNAVAILABLE without internal details
    let err = recognition
        .recognize(with_key(
            RecognizeRequest {
                image: fixture("cat.jpg"),
                top_k: 0,
                min_score: None,
            },
            Some(&recognize),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        !err.message().contains("127.0.0.1") && !err.message().contains("tcp"),
        "{err}"
    );

    // health checks and reflection need no key
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in [
        "rvc.catalog.v1.ProductService",
        "rvc.catalog.v1.RecognitionService",
    ] {
        let h = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            h.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel);
    let mut stream = reflection
        .server_reflection_info(futures::stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "rvc.catalog.v1.ProductService",
        "rvc.catalog.v1.RecognitionService",
    ] {
        assert!(names.iter().any(|n| n == s), "{names:?}");
    }
    svc.stop().await;
}

#[tokio::test]
async fn rate_limits_per_key_answer_429_and_resource_exhausted_then_recover() {
    let db = TestDb::new().await;
    let mut cfg = config(&db, &prefix());
    // 2 a second, bursts of 2; the bucket is per key and scope, shared by HTTP and gRPC
    cfg.auth.rate_limit_catalog_read = RateSpec {
        per_sec: 2.0,
        burst: 2.0,
    };
    let svc = start(&cfg).await;
    let http = Http::new(&svc);
    let key = db.api_key(&[Scope::CatalogRead]).await;
    let other = db.api_key(&[Scope::CatalogRead]).await;
    assert_eq!(http.list(Some(&key)).await.status, 200);
    assert_eq!(http.list(Some(&key)).await.status, 200);
    let a = http.list(Some(&key)).await;
    assert_problem(&a, 429, "over the limit");
    let retry: u64 = a.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let mut client = ProductServiceClient::connect(format!("http://{}", svc.grpc_addr))
        .await
        .unwrap();
    let err = client
        .get_products_info(with_key(
            GetProductsInfoRequest {
                product_ids: vec![],
            },
            Some(&key),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.metadata().get("retry-after").is_some());
    // another key has its own bucket
    assert_eq!(http.list(Some(&other)).await.status, 200);
    // and the limited key recovers once its bucket refills
    eventually("the bucket refills", Duration::from_secs(3), || {
        let http = &http;
        let key = key.as_str();
        async move { (http.list(Some(key)).await.status == 200).then_some(()) }
    })
    .await;
    svc.stop().await;
}

#[tokio::test]
async fn auth_mode_disabled_lets_everything_through_on_loopback_only() {
    let db = TestDb::new().await;
    let mut cfg = config(&db, &prefix());
    cfg.auth.auth_mode = AuthMode::Disabled;
    let svc = start(&cfg).await;
    let http = Http::new(&svc);
    assert_eq!(http.list(None).await.status, 200);
    assert_eq!(http.batch_get(None).await.status, 200);
    assert_problem(
        &http.recognize(None, b"no photo".to_vec()).await,
        415,
        "no key",
    );
    let mut client = ProductServiceClient::connect(format!("http://{}", svc.grpc_addr))
        .await
        .unwrap();
    assert_eq!(
        code(
            client
                .get_products_info(with_key(
                    GetProductsInfoRequest {
                        product_ids: vec![],
                    },
                    None
                ))
                .await
        ),
        tonic::Code::Ok
    );
    svc.stop().await;

    for (http_addr, grpc_addr) in [("0.0.0.0:0", "127.0.0.1:0"), ("127.0.0.1:0", "0.0.0.0:0")] {
        let mut cfg = config(&db, &prefix());
        cfg.auth.auth_mode = AuthMode::Disabled;
        cfg.http_addr = http_addr.into();
        cfg.grpc_addr = grpc_addr.into();
        let cache = rvc_catalog::cache_from(&cfg.cache).await.unwrap();
        let err = rvc_catalog::start(
            &cfg,
            cache,
            ReaderOptions::default(),
            CancellationToken::new(),
        )
        .await
        .err()
        .expect("AUTH_MODE=disabled off loopback must not start");
        assert!(
            matches!(err, rvc_catalog::StartError::AuthDisabledOffLoopback(_)),
            "{err}"
        );
    }
}

#[tokio::test]
async fn openapi_documents_the_bearer_scheme_scopes_and_auth_answers() {
    let db = TestDb::new().await;
    let svc = start(&config(&db, &prefix())).await;
    let doc: serde_json::Value =
        reqwest::get(format!("http://{}/api-docs/openapi.json", svc.http_addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    for (path, method, scope) in [
        ("/api/v1/products", "get", "catalog:read"),
        ("/api/v1/products:batchGet", "post", "catalog:read"),
        ("/api/v1/recognize", "post", "recognize"),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(
            op["security"],
            serde_json::json!([{ "api_key": [scope] }]),
            "{path}"
        );
        for status in ["401", "403", "429", "503"] {
            assert!(
                op["responses"][status]["content"]["application/problem+json"].is_object(),
                "{path} {status}"
            );
        }
        assert!(op["responses"]["429"]["headers"]["Retry-After"].is_object());
    }
    let rec = &doc["paths"]["/api/v1/recognize"]["post"];
    assert!(rec["requestBody"]["content"]["multipart/form-data"].is_object());
    for status in ["200", "400", "413", "415", "422"] {
        assert!(rec["responses"][status].is_object(), "recognize {status}");
    }
    for schema in [
        "Recognition",
        "RecognizedObject",
        "RecognizedProduct",
        "RecognizedBox",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // the price is a decimal string; price_minor is not part of the JSON answer
    let product = &doc["components"]["schemas"]["RecognizedProduct"]["properties"];
    assert_eq!(product["price"]["type"], "string");
    assert!(product["price_minor"].is_null());
    svc.stop().await;
}

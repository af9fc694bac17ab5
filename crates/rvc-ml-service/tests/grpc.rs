//! The gRPC surface, served in-process on a free loopback port with the real model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cosine, embedder, fixture, service_config, TestServer};
use rvc_ml_service::ServiceConfig;
use rvc_proto::ml::{GetModelInfoRequest, VectorizeBatchRequest, VectorizeRequest};
use tonic::Code;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

fn req(bytes: Vec<u8>) -> VectorizeRequest {
    VectorizeRequest {
        image_data: bytes,
        image_type: "image/jpeg".to_owned(),
    }
}

#[tokio::test]
async fn vectorize_image_matches_the_library() {
    let server = TestServer::start(service_config()).await;
    let mut client = server.client().await;
    let cat = fixture("cat.jpg");
    let resp = client
        .vectorize_image(req(cat.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.vector.len(), 1280);
    assert_eq!(
        resp.model_version,
        "efficientnet-lite0-imagenet/r256-c224-v1"
    );
    let local = embedder().embed(&cat).unwrap();
    assert!(cosine(&resp.vector, &local) > 0.999_999);
    server.stop().await;
}

#[tokio::test]
async fn batch_keeps_request_order() {
    let server = TestServer::start(service_config()).await;
    let mut client = server.client().await;
    let names = ["coffee.jpg", "cat.jpg", "rocket.jpg", "cat.jpg"];
    let resp = client
        .vectorize_images(VectorizeBatchRequest {
            images: names.iter().map(|n| req(fixture(n))).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results.len(), names.len());
    let e = embedder();
    for (name, r) in names.iter().zip(&resp.results) {
        let local = e.embed(&fixture(name)).unwrap();
        assert!(cosine(&r.vector, &local) > 0.999_999, "{name} out of order");
        assert_eq!(r.model_version, "efficientnet-lite0-imagenet/r256-c224-v1");
    }
    assert_eq!(resp.results[1].vector, resp.results[3].vector);

    // Over ML_MAX_BATCH (8): refused as INVALID_ARGUMENT.
    let err = client
        .vectorize_images(VectorizeBatchRequest {
            images: (0..9).map(|_| req(fixture("cat.jpg"))).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("ML_MAX_BATCH"), "{}", err.message());
    server.stop().await;
}

#[tokio::test]
async fn corrupt_bytes_are_invalid_argument() {
    let server = TestServer::start(service_config()).await;
    let mut client = server.client().await;
    let err = client
        .vectorize_image(req(b"\xff\xd8\xff\xe0 definitely broken jpeg".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("invalid image"), "{}", err.message());

    let err = client.vectorize_image(req(Vec::new())).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("empty"), "{}", err.message());

    // One bad image in a batch: the whole call fails and names the index.
    let err = client
        .vectorize_images(VectorizeBatchRequest {
            images: vec![req(fixture("cat.jpg")), req(b"garbage".to_vec())],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("images[1]"), "{}", err.message());

    // The service still works afterwards.
    let ok = client
        .vectorize_image(req(fixture("coffee.jpg")))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().vector.len(), 1280);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_resource_exhausted() {
    let server = TestServer::start(ServiceConfig {
        workers: 1,
        queue_capacity: 2,
        ..service_config()
    })
    .await;
    let client = server.client().await;
    let cat = fixture("cat.jpg");
    let calls = (0..24).map(|_| {
        let mut c = client.clone();
        let bytes = cat.clone();
        tokio::spawn(async move { c.vectorize_image(req(bytes)).await })
    });
    let results = futures::future::join_all(calls).await;
    let mut ok = 0;
    let mut exhausted = 0;
    for r in results {
        match r.unwrap() {
            Ok(resp) => {
                assert_eq!(resp.into_inner().vector.len(), 1280);
                ok += 1;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains("queue"), "{}", s.message());
                exhausted += 1;
            }
            Err(s) => panic!("unexpected status {s:?}"),
        }
    }
    assert!(ok >= 2, "some calls must be served (ok={ok})");
    assert!(
        exhausted >= 1,
        "a full queue must refuse calls (ok={ok}, exhausted={exhausted})"
    );
    assert_eq!(ok + exhausted, 24);

    // A batch larger than the queue can never fit: a clear INVALID_ARGUMENT, not a retry loop.
    let mut c = client.clone();
    let err = c
        .vectorize_images(VectorizeBatchRequest {
            images: (0..3).map(|_| req(cat.clone())).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Once the burst is over, the queue admits calls again.
    let mut c = client.clone();
    assert!(c.vectorize_image(req(cat.clone())).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn model_info() {
    let server = TestServer::start(service_config()).await;
    let mut client = server.client().await;
    let info = client
        .get_model_info(GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "efficientnet-lite0-imagenet");
    assert_eq!(
        info.model_version,
        "efficientnet-lite0-imagenet/r256-c224-v1"
    );
    assert_eq!(info.dimension, 1280);
    assert_eq!((info.input_width, info.input_height), (224, 224));
    server.stop().await;
}

#[tokio::test]
async fn health_reports_serving() {
    let server = TestServer::start(service_config()).await;
    let mut health = common::health_client(&server.url()).await.unwrap();
    for service in ["", "rvc.ml.v1.MachineLearningService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn oversized_message_is_refused() {
    let server = TestServer::start(ServiceConfig {
        max_message_bytes: 16 * 1024,
        ..service_config()
    })
    .await;
    let mut client = server.client().await;
    let cat = fixture("cat.jpg");
    assert!(cat.len() > 16 * 1024);
    let err = client.vectorize_image(req(cat)).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    server.stop().await;
}

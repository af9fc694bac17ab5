//! The tonic interceptor layer in front of a real gRPC service (tonic-health's, the smallest
//! at hand), called by a real tonic client over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rvc_auth::{AuthArgs, Authenticator, RateSpec, Scope};
use rvc_test_support::TestDb;
use tonic::transport::Server;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn grpc_codes_for_missing_wrong_scope_rate_limit_and_success() {
    let db = TestDb::new().await;
    let auth = Authenticator::build(
        AuthArgs {
            rate_limit_catalog_read: RateSpec {
                per_sec: 1.0,
                burst: 2.0,
            },
            ..AuthArgs::default()
        },
        db.pool.clone(),
    )
    .await
    .unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = auth.grpc_layer(|path| {
        if path.ends_with("/Watch") {
            None
        } else {
            Some(Scope::CatalogRead)
        }
    });
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let call = |key: Option<String>| {
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        if let Some(k) = key {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        req
    };
    let code = |r: Result<tonic::Response<_>, tonic::Status>| match r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    let read = db.api_key(&[Scope::CatalogRead]).await;
    let write = db.api_key(&[Scope::CatalogWrite]).await;
    assert_eq!(
        code(client.check(call(None)).await),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        code(client.check(call(Some("rvc_nope".into()))).await),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        code(client.check(call(Some(write))).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(client.check(call(Some(read.clone()))).await),
        tonic::Code::Ok
    );
    assert_eq!(
        code(client.check(call(Some(read.clone()))).await),
        tonic::Code::Ok
    );
    let limited = client.check(call(Some(read))).await.unwrap_err();
    assert_eq!(limited.code(), tonic::Code::ResourceExhausted);
    assert_eq!(limited.metadata().get("retry-after").unwrap(), "1");
    // a path the policy leaves open needs no key
    assert!(client.watch(call(None)).await.is_ok());
}

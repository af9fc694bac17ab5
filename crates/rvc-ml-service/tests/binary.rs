//! The `rvc-ml-service` binary: `--help` and a real process stopped by SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

const BIN: &str = env!("CARGO_BIN_EXE_rvc-ml-service");

#[test]
fn help_lists_every_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "ML_ADDR",
        "METRICS_ADDR",
        "ML_MODEL_PATH",
        "ML_MODEL_NAME",
        "ML_MODEL_VERSION",
        "ML_INPUT_SIZE",
        "ML_RESIZE_SHORT_SIDE",
        "ML_NORM_MEAN",
        "ML_NORM_STD",
        "ML_OUTPUT_NAME",
        "ML_MAX_IMAGE_PIXELS",
        "ML_WORKERS",
        "ML_QUEUE_CAPACITY",
        "ML_MAX_BATCH",
        "ML_MAX_MESSAGE_BYTES",
        "ML_SHUTDOWN_GRACE_SECS",
        "LOG_FORMAT",
        "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(help.contains(var), "--help does not mention {var}:\n{help}");
    }
}

#[test]
fn missing_model_fails_fast_naming_the_setup_script() {
    let out = Command::new(BIN)
        .env("ML_ADDR", "127.0.0.1:0")
        .env("ML_MODEL_PATH", "/nonexistent/model.onnx")
        .env("LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/setup-model.sh"), "{err}");
}

#[tokio::test]
async fn serves_then_stops_on_sigterm() {
    use rvc_test_support::net::free_port;
    let port = free_port();
    let metrics_port = free_port();
    let mut child = Command::new(BIN)
        .env("ML_ADDR", format!("127.0.0.1:{port}"))
        .env("ML_MODEL_PATH", common::model_path())
        .env("ML_WORKERS", "1")
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let serving = loop {
        if let Ok(mut h) = common::health_client(&url).await {
            if let Ok(r) = h
                .check(HealthCheckRequest {
                    service: "rvc.ml.v1.MachineLearningService".into(),
                })
                .await
            {
                break r.into_inner().status == ServingStatus::Serving as i32;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the binary did not start serving within 60 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the binary exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(serving);
    let mut client =
        rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient::connect(url)
            .await
            .unwrap();
    let v = client
        .vectorize_image(rvc_proto::ml::VectorizeRequest {
            image_data: common::fixture("coffee.jpg"),
            image_type: "jpg".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.vector.len(), 1280);
    drop(client);

    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        })
    };
    // /readyz follows the inference threads: ready while one runs.
    let ready = get("/readyz").await.unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        get("/metrics").await.unwrap().contains("ml_workers_live 1"),
        "one live inference thread"
    );
    // Prometheus text on METRICS_ADDR counts the embedded image.
    let metrics = get("/metrics").await.unwrap();
    assert!(
        metrics.contains("ml_images_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the binary did not exit within 20 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

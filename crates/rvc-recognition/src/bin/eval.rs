//! `rvc-recognition-eval`: the recognition evaluation of `make eval` ([`rvc_recognition::eval`]).
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "rvc-recognition-eval")]
struct Args {
    #[command(flatten)]
    eval: rvc_recognition::eval::EvalArgs,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    rvc_recognition::eval::run(&Args::parse().eval).await?;
    Ok(())
}

use clap::Parser;
use rvc_ingest_api::{Application, Config};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let config = Config::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-ingest-api", &config.telemetry)?;
    rvc_runtime::health::build_info("")?;
    let app = Application::build(config).await?;
    tracing::info!(addr = %app.addr(), "rvc-ingest-api listening");
    app.run_until_stopped().await?;
    Ok(())
}

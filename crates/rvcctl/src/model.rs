//! `rvcctl model migrate|status`: switch recognition to a new model with no downtime
//! (docs/operations.md "Model migration").
use crate::error::CtlError;
use crate::error::DbContext;
use crate::output::{human_secs, opt_when, print_json, when, Table};
use crate::Ctx;
use rvc_domain::ModelState;
use rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient;
use rvc_proto::ml::GetModelInfoRequest;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Adds the model in state `building` and one `embed` outbox row per product that is not
archived, in one transaction. The vectorizers then build the new model's points in the background
(EMBED_MAX_PHOTOS_PER_SEC per process) while recognition keeps answering from the active model;
products ingested meanwhile get both models' points. When every embed row is done the new model
becomes active in one transaction, rvc-catalog follows within RECOGNITION_MODEL_REFRESH_MS, and
the old model's collection is dropped after MODEL_RETIRE_GRACE_SECS. A crash anywhere resumes
where it stopped (the rows are outbox rows).

Examples:
  rvcctl model migrate --to efficientnet-lite0@2 --ml-url http://ml-v2:50051 --dry-run
  rvcctl model migrate --to efficientnet-lite0@2 --ml-url http://ml-v2:50051
  rvcctl model status"
)]
pub struct MigrateArgs {
    /// The model version to build: what the new ML service reports in GetModelInfo.
    #[arg(long = "to", value_name = "MODEL_VERSION")]
    pub to: String,
    /// gRPC URL of an rvc-ml-service serving that model (reached by the vectorizers and
    /// rvc-catalog; it is asked for its model version first).
    #[arg(long, value_name = "URL")]
    pub ml_url: String,
    /// Collection to build the model in (default: product_images_ + the version with every
    /// character other than [A-Za-z0-9_-] as `_`).
    #[arg(long)]
    pub collection: Option<String>,
    /// Do not ask the ML service which model it serves (it is unreachable from here).
    #[arg(long)]
    pub skip_ml_check: bool,
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The collection a model gets when none is given.
pub fn default_collection(model_version: &str) -> String {
    let safe: String = model_version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("product_images_{safe}")
}

async fn served_model(url: &str) -> Result<String, CtlError> {
    let refused = |e: String| {
        CtlError::Refused(format!(
            "could not ask the ML service at {url} which model it serves: {e}; start it, or \
             pass --skip-ml-check if it is only reachable from the vectorizers"
        ))
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| CtlError::Usage(format!("--ml-url {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| refused(e.to_string()))?;
    let info = MachineLearningServiceClient::new(channel)
        .get_model_info(GetModelInfoRequest {})
        .await
        .map_err(|s| refused(format!("{:?}: {}", s.code(), s.message())))?
        .into_inner();
    Ok(info.model_version)
}

pub async fn migrate(ctx: &Ctx, a: &MigrateArgs) -> Result<(), CtlError> {
    if a.to.trim().is_empty() {
        return Err(CtlError::Usage("--to must name a model version".to_owned()));
    }
    let collection = a
        .collection
        .clone()
        .unwrap_or_else(|| default_collection(&a.to));
    if !a.skip_ml_check {
        let served = served_model(&a.ml_url).await?;
        if served != a.to {
            return Err(CtlError::Refused(format!(
                "the ML service at {} serves model {served:?}, not {:?}: nothing changed",
                a.ml_url, a.to
            )));
        }
    }
    let mut client = ctx.pool.get().await?;
    let tx = tokio_postgres::Client::transaction(&mut client)
        .await
        .ctx("migrate begin")?;
    let started = rvc_store::models::start_migration(&tx, &a.to, &collection, &a.ml_url).await?;
    if a.dry_run {
        drop(tx); // rolled back
    } else {
        tx.commit().await.ctx("migrate commit")?;
    }
    if ctx.json() {
        return print_json(&serde_json::json!({
            "dry_run": a.dry_run,
            "model_version": started.model_version,
            "collection": started.collection,
            "from_model_version": started.from_model_version,
            "enqueued": started.enqueued,
        }));
    }
    let verb = if a.dry_run { "would build" } else { "building" };
    println!(
        "{verb} model {} in collection {} ({} products to embed); recognition answers from {} \
         until it is complete{}",
        started.model_version,
        started.collection,
        started.enqueued,
        started.from_model_version,
        if a.dry_run {
            " (dry run: nothing changed)"
        } else {
            ". Follow it with `rvcctl model status`."
        }
    );
    Ok(())
}

pub async fn status(ctx: &Ctx) -> Result<(), CtlError> {
    let client = ctx.pool.get().await?;
    let models = rvc_store::models::status(&**client).await?;
    if ctx.json() {
        return print_json(&models);
    }
    if models.is_empty() {
        println!(
            "no recognition model recorded yet (the first vectorizer to start registers its model)"
        );
        return Ok(());
    }
    let mut t = Table::new(&[
        "MODEL",
        "STATE",
        "COLLECTION",
        "DONE",
        "TOTAL",
        "DEAD",
        "RATE/s",
        "ETA",
        "SINCE",
    ])
    .right(&[3, 4, 5, 6]);
    for m in &models {
        let since = match m.model.state {
            ModelState::Building => when(m.model.created_at),
            ModelState::Active => opt_when(m.model.activated_at),
            ModelState::Retired => match m.model.dropped_at {
                Some(d) => format!("{} (dropped)", when(d)),
                None => opt_when(m.model.retired_at),
            },
        };
        t.row(vec![
            m.model.model_version.clone(),
            m.model.state.to_string(),
            m.model.collection.clone(),
            m.done.to_string(),
            m.total.to_string(),
            m.dead.to_string(),
            format!("{:.1}", m.rate_per_sec),
            m.eta_secs.map_or_else(|| "-".to_owned(), human_secs),
            since,
        ]);
    }
    print!("{}", t.render());
    if let Some(b) = models
        .iter()
        .find(|m| m.model.state == ModelState::Building)
    {
        if b.dead > 0 {
            println!(
                "{} embed rows of {} are dead and hold the switch: `rvcctl outbox list --kind embed --state dead`, then replay or cancel them",
                b.dead, b.model.model_version
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_collections_are_safe_names() {
        assert_eq!(
            default_collection("efficientnet-lite0@2 (int8)"),
            "product_images_efficientnet-lite0_2__int8_"
        );
    }
}

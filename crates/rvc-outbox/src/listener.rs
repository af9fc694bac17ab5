//! LISTEN/NOTIFY wake-ups. Only a hint: notifications coalesce and are lost while the
//! connection is down, so workers also poll; after a reconnect everybody is woken once.
use crate::queue::NOTIFY_CHANNEL;
use futures::StreamExt;
use rvc_domain::OutboxKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// Spawns a task holding one LISTEN connection; `wake` is notified for rows of `kind`.
pub fn spawn_listener(
    config: tokio_postgres::Config,
    kind: OutboxKind,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let result = listen_once(&config, kind, &wake, &shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            let why = match result {
                Ok(()) => "connection closed".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64,
                "LISTEN connection lost; polling covers the gap");
            wake.notify_waiters();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    })
}

async fn listen_once(
    config: &tokio_postgres::Config,
    kind: OutboxKind,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let listen_sql = format!("LISTEN {NOTIFY_CHANNEL}");
    let listen = client.batch_execute(&listen_sql);
    tokio::pin!(listen);
    // Drive the connection while the LISTEN command runs.
    loop {
        tokio::select! {
            r = &mut listen => { r?; break; }
            m = messages.next() => match m {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
    tracing::debug!(kind = kind.as_str(), "listening for outbox notifications");
    // Anything enqueued while we were not listening: look now.
    wake.notify_waiters();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(n))) if n.payload() == kind.as_str() => {
                    wake.notify_waiters();
                    wake.notify_one();
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
}

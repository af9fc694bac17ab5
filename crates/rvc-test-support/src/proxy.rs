//! A TCP proxy on a free loopback port whose client→server direction can be held: a test
//! closes the gate, waits until a request is held there, changes the world, then opens it.
//! Nothing is faked: bytes pass through unchanged, only later.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

pub struct GateProxy {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    held: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl GateProxy {
    /// Forwards to `upstream`, gate open.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, open_rx) = watch::channel(true);
        let held = Arc::new(Notify::new());
        let h = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (gate, held) = (open_rx.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut gate = gate.clone();
                        if !*gate.borrow() {
                            held.notify_one();
                            if gate.wait_for(|o| *o).await.is_err() {
                                break;
                            }
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
            }
        });
        Self {
            addr,
            open,
            held,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds client bytes from now on.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Lets held and later bytes through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Waits until a client sent something while the gate was closed.
    pub async fn wait_held(&self, within: Duration) {
        tokio::time::timeout(within, self.held.notified())
            .await
            .expect("a request reached the closed gate in time");
    }
}

impl Drop for GateProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! The HTTP listener: `/metrics` for Prometheus, `/` pointing at it.
//!
//! The kernel objects belong to the daemon's loop, so a scrape is a request
//! sent to that loop, which answers with the rendered text: every scrape
//! shows the counters as they are at that moment.

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// One scrape waiting for the daemon loop's answer.
pub type Scrape = oneshot::Sender<String>;

/// A running listener; [`Server::stop`] ends it after the requests in flight.
pub struct Server {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `addr` now (so a taken port is an error at start or reload,
    /// naming the address) and serves on a task of the current runtime.
    pub async fn bind(addr: SocketAddr, scrapes: mpsc::Sender<Scrape>) -> Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} (web.listen_address)"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let app = router(scrapes);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server { addr, stop, task })
    }

    /// Stops accepting, lets the requests in flight finish, and returns.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .context("the HTTP task panicked")?
            .with_context(|| format!("serving on {}", self.addr))
    }
}

/// The routes: `/metrics` asks the daemon loop through `scrapes`, `/`
/// points at it, anything else is 404. Public so the fuzz targets
/// (`fuzz/`) can serve hostile requests without a socket.
pub fn router(scrapes: mpsc::Sender<Scrape>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .with_state(scrapes)
}

async fn metrics(State(scrapes): State<mpsc::Sender<Scrape>>) -> Response {
    let (reply, answer) = oneshot::channel();
    if scrapes.send(reply).await.is_err() {
        return stopping();
    }
    match answer.await {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(_) => stopping(),
    }
}

fn stopping() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "pfnwatch is stopping\n").into_response()
}

async fn index() -> &'static str {
    "pfnwatch: metrics are at /metrics\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_text(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test(flavor = "current_thread")]
    async fn scrapes_are_answered_by_the_owner_of_the_counters() {
        let (tx, mut rx) = mpsc::channel::<Scrape>(4);
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), tx)
            .await
            .unwrap();
        let addr = server.addr;
        assert_ne!(addr.port(), 0);
        let owner = tokio::spawn(async move {
            let mut n = 0;
            while let Some(reply) = rx.recv().await {
                n += 1;
                let _ = reply.send(format!("pfnwatch_test_total {n}\n"));
            }
        });
        let first = get_text(addr, "/metrics").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(
            first.contains("content-type: text/plain; version=0.0.4"),
            "{first}"
        );
        assert!(first.ends_with("pfnwatch_test_total 1\n"), "{first}");
        assert!(
            get_text(addr, "/metrics")
                .await
                .ends_with("pfnwatch_test_total 2\n")
        );
        assert!(get_text(addr, "/").await.contains("/metrics"));
        assert!(get_text(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        // A second listener on the same port is an error naming it.
        let (tx2, _rx2) = mpsc::channel::<Scrape>(1);
        let err = Server::bind(addr, tx2).await.err().unwrap();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
        server.stop().await.unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still listening"
        );
        owner.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stopping_daemon_answers_503() {
        let (tx, rx) = mpsc::channel::<Scrape>(4);
        drop(rx);
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), tx)
            .await
            .unwrap();
        let reply = get_text(server.addr, "/metrics").await;
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        server.stop().await.unwrap();
    }
}

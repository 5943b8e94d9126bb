//! The HTTP listener: `/metrics` for Prometheus, `/` pointing at it, over
//! plain HTTP or, with a web configuration file (`web_config.rs`), TLS
//! (`tls.rs`) and basic auth (`auth.rs`).
//!
//! The kernel objects belong to the daemon's loop, so a scrape is a request
//! sent to that loop, which answers with the rendered text: every scrape
//! shows the counters as they are at that moment.
//!
//! Connections are accepted here and each served on a task of its own, TLS
//! handshake included, so a slow or silent client holds up nobody else.
//! A reload hands the listener a new [`WebConfig`]: new connections get its
//! TLS, and every request from then on its users and headers.

pub mod auth;
pub mod tls;
pub mod web_config;

pub use web_config::{WebConfig, WebConfigError};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// One scrape waiting for the daemon loop's answer.
pub type Scrape = oneshot::Sender<String>;

/// How long a client has for the TLS handshake, and for a request's
/// headers: a connection that sends nothing is closed, not kept.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// A running listener; [`Server::stop`] ends it after the requests in flight.
pub struct Server {
    pub addr: SocketAddr,
    web: watch::Sender<Arc<WebConfig>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` now (so a taken port is an error at start or reload,
    /// naming the address) and serves on a task of the current runtime.
    pub async fn bind(
        addr: SocketAddr,
        scrapes: mpsc::Sender<Scrape>,
        web: Arc<WebConfig>,
    ) -> Result<Server> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} (web.listen_address)"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let (web, current) = watch::channel(web);
        let app = router(scrapes, current.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(accept(listener, app, current, stopped));
        Ok(Server {
            addr,
            web,
            stop,
            task,
        })
    }

    /// What the listener serves with from now on: TLS for new
    /// connections, users and headers for every request.
    pub fn set_web(&self, web: Arc<WebConfig>) {
        self.web.send_replace(web);
    }

    pub fn web(&self) -> Arc<WebConfig> {
        self.web.borrow().clone()
    }

    /// `https://addr/metrics` or `http://...`, for the log.
    pub fn url(&self) -> String {
        format!("{}://{}/metrics", self.web().scheme(), self.addr)
    }

    /// Stops accepting, lets the requests in flight finish, and returns.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .with_context(|| format!("the HTTP task on {} panicked", self.addr))
    }
}

/// The routes behind the web configuration's guard (basic auth, headers):
/// `/metrics` asks the daemon loop through `scrapes`, `/` points at it,
/// anything else is 404. Public so the fuzz targets (`fuzz/`) can serve
/// hostile requests without a socket.
pub fn router(scrapes: mpsc::Sender<Scrape>, web: watch::Receiver<Arc<WebConfig>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .with_state(scrapes)
        .layer(middleware::from_fn_with_state(web, guard))
}

async fn accept(
    listener: TcpListener,
    app: Router,
    web: watch::Receiver<Arc<WebConfig>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            // The client gave up before we took it: nothing to say.
            Err(e) if is_connection_error(&e) => continue,
            // Out of file descriptors and the like: say so, and give the
            // host a moment rather than spinning.
            Err(e) => {
                tracing::warn!(
                    "accepting on {}: {e}",
                    listener
                        .local_addr()
                        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let tls = web.borrow().tls.as_ref().map(|t| t.acceptor.clone());
        let watcher = graceful.watcher();
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, tls, app, watcher).await {
                // Scanners and dropped connections: not worth a warning.
                tracing::debug!(%peer, "HTTP connection: {e:#}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn connection(
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    watcher: Watcher,
) -> Result<()> {
    let _ = tcp.set_nodelay(true);
    let service = TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let Some(acceptor) = tls else {
        let conn = http.serve_connection(TokioIo::new(tcp), service);
        return Ok(watcher.watch(conn).await?);
    };
    let handshake = async {
        if !starts_with_tls(&tcp).await? {
            refuse_plain_http(tcp).await;
            return Ok(None);
        }
        acceptor.accept(tcp).await.map(Some)
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(Some(stream))) => stream,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e).context("TLS handshake"),
        Err(_) => anyhow::bail!("no TLS handshake in {HANDSHAKE_TIMEOUT:?}"),
    };
    let conn = http.serve_connection(TokioIo::new(stream), service);
    Ok(watcher.watch(conn).await?)
}

/// A TLS connection opens with a handshake record (content type 22); an
/// HTTP request opens with a method's letters.
async fn starts_with_tls(tcp: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    Ok(n == 1 && first[0] == 0x16)
}

/// What Go's servers answer, so the operator sees the cause rather than a
/// connection reset.
async fn refuse_plain_http(mut tcp: TcpStream) {
    let body = "Client sent an HTTP request to an HTTPS server.\n";
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(reply.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Basic auth, when configured, for every path; the file's headers on
/// every answer, refusals included (as the toolkit does).
async fn guard(
    State(web): State<watch::Receiver<Arc<WebConfig>>>,
    request: Request,
    next: Next,
) -> Response {
    let web = web.borrow().clone();
    let mut response = match &web.auth {
        Some(auth) if !auth.allows(request.headers()).await => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, auth::CHALLENGE)],
            "Unauthorized\n",
        )
            .into_response(),
        _ => next.run(request).await,
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
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
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), tx, Arc::default())
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
        let err = Server::bind(addr, tx2, Arc::default()).await.err().unwrap();
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
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), tx, Arc::default())
            .await
            .unwrap();
        let reply = get_text(server.addr, "/metrics").await;
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        server.stop().await.unwrap();
    }
}

//! The `/metrics` listener: requests served by the daemon's own router
//! (`sinks::http::router`, without a web configuration file) through `axum::serve`, as `pfnwatch run` serves
//! them, over in-memory streams instead of sockets.
//!
//! The first input byte chooses the form: even, a request line made of a
//! method (the second byte) and a request target (the rest: path and
//! query, with the bytes that would end the request line left out); odd,
//! the rest sent as it is (any bytes a client could send).
//!
//! Properties, beyond "never panics": every request is answered (an HTTP
//! status line, in bounded time); the daemon loop is asked for a scrape
//! only for GET or HEAD of the path `/metrics` (with any query), and
//! always for those unless the request line itself was refused (400);
//! a scrape's body reaches the client unchanged.

#![no_main]

use axum::serve::Listener;
use libfuzzer_sys::fuzz_target;
use pfnwatch::sinks::http::{Scrape, WebConfig, router};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// What the daemon loop answers a scrape with.
const BODY: &str = "pfnwatch_fuzz_scrapes_total 1\n";

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get", "CONNECT",
];

/// Connections handed to `axum::serve` in place of accepted sockets.
struct Connections(mpsc::UnboundedReceiver<DuplexStream>);

impl Listener for Connections {
    type Io = DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> (DuplexStream, ()) {
        match self.0.recv().await {
            Some(io) => (io, ()),
            // The fuzzer holds the sender for the process's life.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One server for the whole run, as the daemon has one listener.
struct Server {
    runtime: Runtime,
    connect: mpsc::UnboundedSender<DuplexStream>,
    scrapes: Arc<AtomicU64>,
}

fn server() -> Server {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("no tokio runtime: {e}"),
    };
    let (connect, accepted) = mpsc::unbounded_channel();
    let (scrape_tx, mut scrape_rx) = mpsc::channel::<Scrape>(4);
    let scrapes = Arc::new(AtomicU64::new(0));
    let counted = scrapes.clone();
    runtime.spawn(async move {
        // The daemon loop's part: answer each scrape.
        while let Some(reply) = scrape_rx.recv().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = reply.send(BODY.to_owned());
        }
    });
    // Plain HTTP without users, as `pfnwatch run` serves by default.
    let (_, web) = tokio::sync::watch::channel(Arc::new(WebConfig::default()));
    runtime.spawn(async move { axum::serve(Connections(accepted), router(scrape_tx, web)).await });
    Server {
        runtime,
        connect,
        scrapes,
    }
}

thread_local! {
    static SERVER: Server = server();
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    if form % 2 == 0 {
        let Some((&method, target)) = rest.split_first() else {
            return;
        };
        request_line(METHODS[usize::from(method) % METHODS.len()], target);
    } else {
        let _ = exchange(rest, true);
    }
});

/// `METHOD target HTTP/1.1`, and what must come of it.
fn request_line(method: &str, target: &[u8]) {
    // Spaces, CR and LF would end the target or the line: another request.
    let target: Vec<u8> = target
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\r' | b'\n'))
        .collect();
    let mut request = format!("{method} ").into_bytes();
    request.extend_from_slice(&target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: pfnwatch\r\nConnection: close\r\n\r\n");
    let (reply, scraped) = exchange(&request, false);
    let text = String::from_utf8_lossy(&reply);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    let Some(status) = status else {
        panic!("no HTTP status line in reply to {request:?}: {text:?}");
    };
    let path = http::Uri::try_from(target.as_slice())
        .ok()
        .map(|uri| uri.path().to_owned());
    let wants_scrape = matches!(method, "GET" | "HEAD") && path.as_deref() == Some("/metrics");
    if scraped {
        assert!(
            wants_scrape,
            "a scrape for {method} {:?} (status {status})",
            String::from_utf8_lossy(&target)
        );
        assert_eq!(status, 200, "a scrape answered {status}");
        if method == "GET" {
            assert!(
                text.ends_with(BODY),
                "the scrape's body was changed: {text:?}"
            );
        }
    } else if wants_scrape {
        assert_eq!(
            status,
            400,
            "no scrape for {method} {:?}: {text:?}",
            String::from_utf8_lossy(&target)
        );
    }
}

/// Sends `request` on a new connection and reads the whole reply; also
/// whether the daemon loop was asked for a scrape. `half_close`: then
/// close the sending side, which ends any request left unfinished (the
/// server closes on it, as hyper does by default, answered or not);
/// else the request must say `Connection: close`.
fn exchange(request: &[u8], half_close: bool) -> (Vec<u8>, bool) {
    SERVER.with(|server| {
        let before = server.scrapes.load(Ordering::SeqCst);
        let (client, io) = tokio::io::duplex(64 * 1024);
        if server.connect.send(io).is_err() {
            panic!("the server is gone");
        }
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let reply = server.runtime.block_on(async {
            let send = async {
                // The server may answer and close before reading it all.
                let _ = to_server.write_all(request).await;
                if half_close {
                    let _ = to_server.shutdown().await;
                }
            };
            let receive = async {
                let mut reply = Vec::new();
                let _ = from_server.read_to_end(&mut reply).await;
                reply
            };
            let talk = async { tokio::join!(send, receive).1 };
            match tokio::time::timeout(Duration::from_secs(10), talk).await {
                Ok(reply) => reply,
                Err(_) => panic!("no reply within 10 s to {request:?}"),
            }
        });
        (reply, server.scrapes.load(Ordering::SeqCst) > before)
    })
}

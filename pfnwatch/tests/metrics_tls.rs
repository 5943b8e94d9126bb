//! `/metrics` behind a web configuration file, as a scraper sees it: a CA,
//! server and client certificates made here, the listener on an ephemeral
//! loopback port, and a real TLS client (rustls, hyper) that must get the
//! metrics with the right credentials and be refused without them.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test code

use base64::Engine;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use pfnwatch::sinks::http::{Scrape, Server, WebConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const METRICS: &str = "pfnwatch_test_total 1\n";
const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse";

/// A CA and what it signed, written as PEM files into a directory of
/// this test's own.
struct Pki {
    dir: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf for `names`, for a server or a client, signed by `ca`: (cert, key).
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// ca.pem; server.pem/.key for localhost and 127.0.0.1; client.pem/.key
    /// from the same CA; rogue.pem/.key from another CA.
    fn new(name: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("pfnwatch-webtls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        let ca = ca("pfnwatch test CA");
        let other = ca_other();
        let files = [
            ("tls/ca.pem", (ca.pem(), String::new())),
            (
                "tls/server",
                leaf(
                    &ca,
                    &["localhost", "127.0.0.1"],
                    ExtendedKeyUsagePurpose::ServerAuth,
                ),
            ),
            (
                "tls/client",
                leaf(&ca, &["scraper"], ExtendedKeyUsagePurpose::ClientAuth),
            ),
            (
                "tls/rogue",
                leaf(&other, &["scraper"], ExtendedKeyUsagePurpose::ClientAuth),
            ),
        ];
        for (name, (cert, key)) in files {
            if key.is_empty() {
                std::fs::write(dir.join(name), cert).unwrap();
            } else {
                std::fs::write(dir.join(format!("{name}.pem")), cert).unwrap();
                std::fs::write(dir.join(format!("{name}.key")), key).unwrap();
            }
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `web.yml` and loads it as the daemon does.
    fn web(&self, yaml: &str) -> Arc<WebConfig> {
        let path = self.path("web.yml");
        std::fs::write(&path, yaml).unwrap();
        Arc::new(WebConfig::load(Some(&path)).unwrap_or_else(|e| panic!("{yaml}\n{e}")))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca_other() -> CertifiedIssuer<'static, KeyPair> {
    ca("someone else's CA")
}

fn bcrypt_users() -> String {
    format!(
        "basic_auth_users:\n  {USER}: {}\n",
        bcrypt::hash(PASSWORD, 4).unwrap()
    )
}

/// The listener with an owner that answers every scrape with [`METRICS`].
async fn serve(web: Arc<WebConfig>) -> Server {
    let (tx, mut rx) = mpsc::channel::<Scrape>(4);
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send(METRICS.to_owned());
        }
    });
    Server::bind("127.0.0.1:0".parse().unwrap(), tx, web)
        .await
        .unwrap()
}

/// What a scraper presents.
#[derive(Clone, Copy)]
struct Client<'a> {
    pki: &'a Pki,
    /// "client", "rogue" or none.
    cert: Option<&'a str>,
    credentials: Option<(&'a str, &'a str)>,
}

struct Answer {
    status: StatusCode,
    www_authenticate: Option<String>,
    headers: hyper::HeaderMap,
    body: String,
}

impl Client<'_> {
    fn tls(&self) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.pki.path("tls/ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match self.cert {
            Some(name) => {
                let chain =
                    CertificateDer::pem_file_iter(self.pki.path(&format!("tls/{name}.pem")))
                        .unwrap()
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap();
                let key = PrivateKeyDer::from_pem_file(self.pki.path(&format!("tls/{name}.key")))
                    .unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// GET /metrics over TLS; `Err` when the connection or request fails.
    async fn get(&self, addr: SocketAddr) -> Result<Answer, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = self
            .tls()
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        request(TokioIo::new(tls), self.credentials).await
    }
}

async fn request<T>(io: T, credentials: Option<(&str, &str)>) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get("/metrics").header("host", "localhost");
    if let Some((user, password)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req = req.header("authorization", format!("Basic {token}"));
    }
    let response = sender
        .send_request(
            req.body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap(),
        )
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        www_authenticate: headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned()),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Plain HTTP, as a scraper without TLS would send it.
async fn plain_get(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

#[tokio::test(flavor = "current_thread")]
async fn tls_and_basic_auth_let_in_the_right_user_only() {
    let pki = Pki::new("auth");
    // Relative paths: from the web config's directory, as in the toolkit.
    let web = pki.web(&format!(
        "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/server.key\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n{}",
        bcrypt_users()
    ));
    assert_eq!(
        web.summary(),
        "https (TLS1.2 TLS1.3, client certificates not asked for), basic auth (1 users), headers x-content-type-options"
    );
    let server = serve(web).await;
    let addr = server.addr;
    assert_eq!(server.url(), format!("https://{addr}/metrics"));
    let client = Client {
        pki: &pki,
        cert: None,
        credentials: Some((USER, PASSWORD)),
    };

    let ok = client.get(addr).await.unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, METRICS);
    assert_eq!(ok.headers["x-content-type-options"], "nosniff");
    // Again: the remembered password, same answer.
    assert_eq!(client.get(addr).await.unwrap().body, METRICS);

    for credentials in [
        Some((USER, "wrong")),
        Some((USER, "")),
        Some(("nobody", PASSWORD)),
        None,
    ] {
        let refused = Client {
            credentials,
            ..client
        }
        .get(addr)
        .await
        .unwrap();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{credentials:?}");
        assert_eq!(
            refused.www_authenticate.as_deref(),
            Some("Basic realm=\"pfnwatch\", charset=\"UTF-8\""),
            "{credentials:?}"
        );
        assert!(!refused.body.contains("pfnwatch_"), "{}", refused.body);
        // The file's headers go on refusals too.
        assert_eq!(refused.headers["x-content-type-options"], "nosniff");
    }

    // Plain HTTP to the TLS port: told so, never the metrics.
    let plain = plain_get(addr).await;
    assert!(plain.starts_with("HTTP/1.1 400 Bad Request"), "{plain}");
    assert!(plain.contains("HTTPS server"), "{plain}");
    assert!(!plain.contains("pfnwatch_"), "{plain}");

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn client_certificates_are_required_and_verified() {
    let pki = Pki::new("mtls");
    let web = pki.web(&format!(
        "tls_server_config:\n  cert_file: {dir}/tls/server.pem\n  key_file: {dir}/tls/server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: tls/ca.pem\n  \
         min_version: TLS13\n{}",
        bcrypt_users(),
        dir = pki.dir.display()
    ));
    assert!(
        web.summary()
            .starts_with("https (TLS1.3, client certificates required)")
    );
    let server = serve(web).await;
    let addr = server.addr;
    let with_cert = Client {
        pki: &pki,
        cert: Some("client"),
        credentials: Some((USER, PASSWORD)),
    };
    let ok = with_cert.get(addr).await.unwrap();
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, METRICS));
    // A certificate is not a password: both are asked for.
    let no_password = Client {
        credentials: None,
        ..with_cert
    };
    assert_eq!(
        no_password.get(addr).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    // Without a certificate, or with one from another CA: no answer at all
    // (TLS 1.3 tells the client after its handshake, at the first read).
    for cert in [None, Some("rogue")] {
        let refused = Client { cert, ..with_cert }.get(addr).await;
        assert!(
            refused.is_err(),
            "{cert:?}: {:?}",
            refused.map(|a| (a.status, a.body))
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_turns_tls_on_and_changes_users() {
    let pki = Pki::new("reload");
    let server = serve(Arc::new(WebConfig::default())).await;
    let addr = server.addr;
    assert!(plain_get(addr).await.ends_with(METRICS));
    assert_eq!(server.url(), format!("http://{addr}/metrics"));

    server.set_web(pki.web(&format!(
        "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/server.key\n  \
         max_version: TLS12\n{}",
        bcrypt_users()
    )));
    assert!(plain_get(addr).await.starts_with("HTTP/1.1 400"));
    let client = Client {
        pki: &pki,
        cert: None,
        credentials: Some((USER, PASSWORD)),
    };
    assert_eq!(client.get(addr).await.unwrap().status, StatusCode::OK);

    // New users on the next reload: the old password no longer works.
    server.set_web(pki.web(&format!(
        "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/server.key\n\
         basic_auth_users:\n  {USER}: {}\n",
        bcrypt::hash("new password", 4).unwrap()
    )));
    assert_eq!(
        client.get(addr).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    let renewed = Client {
        credentials: Some((USER, "new password")),
        ..client
    };
    assert_eq!(renewed.get(addr).await.unwrap().body, METRICS);

    // And back to plain HTTP without auth.
    server.set_web(Arc::new(WebConfig::default()));
    assert!(plain_get(addr).await.ends_with(METRICS));
    server.stop().await.unwrap();
}

/// `pfnwatch run --check-config` reads the web configuration and its
/// certificates, and refuses a bad one with its file and key, exit 1.
#[test]
fn check_config_reads_the_web_config_and_refuses_a_bad_one() {
    let pki = Pki::new("check");
    let toml = pki.path("pfnwatch.toml");
    std::fs::write(
        &toml,
        format!(
            "[web]\nconfig_file = \"{}\"\n",
            pki.path("web.yml").display()
        ),
    )
    .unwrap();
    let check = |web_yaml: &str, flags: &[&str]| {
        std::fs::write(pki.path("web.yml"), web_yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pfnwatch"))
            .args(["run", "--check-config", "--config"])
            .arg(&toml)
            .args(flags)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = format!(
        "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/server.key\n{}",
        bcrypt_users()
    );
    let (code, out, _) = check(&good, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("/metrics over https (TLS1.2 TLS1.3, client certificates not asked for), basic auth (1 users)"),
        "{out}"
    );

    let web = pki.path("web.yml").display().to_string();
    let cases = [
        (
            "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/server.key\n  client_auth: x\n".to_owned(),
            format!("{web}:4: tls_server_config.client_auth: unknown field `client_auth`"),
        ),
        (
            "tls_server_config:\n  cert_file: tls/missing.pem\n  key_file: tls/server.key\n".to_owned(),
            format!(
                "{web}: tls_server_config.cert_file: reading {}: No such file or directory",
                pki.path("tls/missing.pem").display()
            ),
        ),
        (
            "basic_auth_users:\n  prometheus: plaintext\n".to_owned(),
            format!("{web}: basic_auth_users.prometheus: not a bcrypt hash"),
        ),
    ];
    for (yaml, want) in cases {
        let (code, out, err) = check(&yaml, &[]);
        assert_eq!(code, Some(1), "{yaml}: {out}");
        assert!(err.contains(&want), "{yaml}:\n got {err}\nwant {want}");
    }
    // The flag wins over the file's key, under either spelling.
    let missing = pki.path("nowhere.yml");
    for flag in ["--web.config.file", "--web-config-file"] {
        let (code, _, err) = check(&good, &[flag, missing.to_str().unwrap()]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains(&format!("reading {}", missing.display())),
            "{err}"
        );
    }
}

#[test]
fn the_shipped_example_parses_once_its_files_exist() {
    let pki = Pki::new("example");
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/web-config.yml.example"),
    )
    .unwrap();
    // The example names files under /etc/pfnwatch/tls; here they are ours.
    let yaml = example.replace("/etc/pfnwatch/tls", &pki.path("tls").display().to_string());
    let web = pki.web(&yaml);
    assert_eq!(
        web.summary(),
        "https (TLS1.2 TLS1.3, client certificates required), headers strict-transport-security x-content-type-options"
    );
}

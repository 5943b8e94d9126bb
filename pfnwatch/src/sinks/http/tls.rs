//! `tls_server_config` as rustls (with *ring*) can serve it: the
//! certificate and key, client certificates verified against a CA, TLS 1.2
//! and 1.3, and the toolkit's suite and curve lists mapped onto what rustls
//! offers. Anything that would weaken it beyond rustls' own set (TLS 1.0,
//! CBC suites, accepting unverified client certificates) is refused by name.

use super::web_config::{Problem, TlsSchema};
use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    NamedGroup, RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

const SECTION: &str = "tls_server_config";

/// A checked TLS configuration, ready for new connections.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// For the log: versions and client authentication.
    pub summary: String,
}

/// Where a PEM value comes from: a file (relative to the web config's
/// directory) or the value itself, and the key that named it.
struct Source {
    key: String,
    file: Option<PathBuf>,
    inline: Option<String>,
}

impl Source {
    /// `inline_key`/`file_key` of the section; both is an error, neither is
    /// `None`.
    fn pick(
        inline_key: &str,
        inline: Option<String>,
        file_key: &str,
        file: Option<String>,
        dir: &Path,
    ) -> Result<Option<Source>, Problem> {
        match (nonempty(inline), nonempty(file)) {
            (Some(_), Some(_)) => Err(Problem::new(
                format!("{SECTION}.{file_key}"),
                format!("give {file_key} or {inline_key}, not both"),
            )),
            (Some(text), None) => Ok(Some(Source {
                key: format!("{SECTION}.{inline_key}"),
                file: None,
                inline: Some(text),
            })),
            (None, Some(file)) => Ok(Some(Source {
                key: format!("{SECTION}.{file_key}"),
                file: Some(dir.join(file)),
                inline: None,
            })),
            (None, None) => Ok(None),
        }
    }

    fn read(&self) -> Result<Vec<u8>, Problem> {
        match (&self.file, &self.inline) {
            (Some(path), _) => std::fs::read(path)
                .map_err(|e| Problem::new(&self.key, format!("reading {}: {e}", path.display()))),
            (None, Some(text)) => Ok(text.as_bytes().to_vec()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// "in /etc/x.crt" or "in the value".
    fn place(&self) -> String {
        match &self.file {
            Some(path) => format!("in {}", path.display()),
            None => "in the value".to_owned(),
        }
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, Problem> {
        let pem = self.read()?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Problem::new(&self.key, format!("{} {}: {e}", "bad PEM", self.place())))?;
        if certs.is_empty() {
            return Err(Problem::new(
                &self.key,
                format!("no PEM CERTIFICATE {}", self.place()),
            ));
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, Problem> {
        let pem = self.read()?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            let why = match e {
                rustls::pki_types::pem::Error::NoItemsFound => String::new(),
                other => format!(": {other}"),
            };
            Problem::new(
                &self.key,
                format!("no PEM PRIVATE KEY {}{why}", self.place()),
            )
        })
    }
}

fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// What the toolkit's `client_auth_type` asks of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

/// The section, checked and with its files read; `None` when it configures
/// nothing (TLS off, as in the toolkit).
pub(super) fn build(section: TlsSchema, dir: &Path) -> Result<Option<Tls>, Problem> {
    let key = |k: &str| format!("{SECTION}.{k}");
    if section.client_allowed_sans.is_some() {
        return Err(Problem::new(
            key("client_allowed_sans"),
            "not supported by pfnwatch; issue client certificates only to scrapers from a CA of their own",
        ));
    }
    let cert = Source::pick("cert", section.cert, "cert_file", section.cert_file, dir)?;
    let private = Source::pick("key", section.key, "key_file", section.key_file, dir)?;
    let client_ca = Source::pick(
        "client_ca",
        section.client_ca,
        "client_ca_file",
        section.client_ca_file,
        dir,
    )?;
    let auth_type = nonempty(section.client_auth_type);
    let tuning = section.min_version.is_some()
        || section.max_version.is_some()
        || section.cipher_suites.is_some()
        || section.curve_preferences.is_some()
        || section.prefer_server_cipher_suites.is_some();
    let (cert, private) = match (cert, private) {
        (None, None) if client_ca.is_none() && auth_type.is_none() && !tuning => return Ok(None),
        (Some(cert), Some(private)) => (cert, private),
        (None, _) => {
            return Err(Problem::new(
                key("cert_file"),
                "missing: TLS needs cert_file (or cert) and key_file (or key)",
            ));
        }
        (Some(_), None) => {
            return Err(Problem::new(
                key("key_file"),
                "missing: TLS needs cert_file (or cert) and key_file (or key)",
            ));
        }
    };

    let client_auth = match auth_type.as_deref().unwrap_or("NoClientCert") {
        "NoClientCert" => ClientAuth::None,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        // Go's RequestClientCert and RequireAnyClientCert take any
        // certificate without checking who signed it: no authentication.
        other @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert") => {
            return Err(Problem::new(
                key("client_auth_type"),
                format!(
                    "{other} is not supported: it accepts client certificates nobody verifies; use RequireAndVerifyClientCert with client_ca_file"
                ),
            ));
        }
        other => {
            return Err(Problem::new(
                key("client_auth_type"),
                format!(
                    "unknown {other:?}: NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let provider = Arc::new(provider(
        section.cipher_suites.as_deref(),
        section.curve_preferences.as_deref(),
    )?);
    let versions = versions(
        section.min_version.as_deref(),
        section.max_version.as_deref(),
    )?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| {
            Problem::new(
                key("cipher_suites"),
                format!("no cipher suite left for the TLS versions allowed: {e}"),
            )
        })?;
    let builder = match (client_auth, client_ca) {
        (ClientAuth::None, None) => builder.with_no_client_auth(),
        (ClientAuth::None, Some(ca)) => {
            return Err(Problem::new(
                ca.key,
                "client CAs are set but client_auth_type is NoClientCert: set client_auth_type: RequireAndVerifyClientCert",
            ));
        }
        (_, None) => {
            return Err(Problem::new(
                key("client_ca_file"),
                "missing: verifying client certificates needs the CA that signs them",
            ));
        }
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in ca.certificates()? {
                roots
                    .add(cert)
                    .map_err(|e| Problem::new(&ca.key, format!("a CA {}: {e}", ca.place())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| Problem::new(&ca.key, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = cert.certificates()?;
    let private_key = private.private_key()?;
    let mut config = builder.with_single_cert(chain, private_key).map_err(|e| {
        let why = match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                "not the private key of the certificate".to_owned()
            }
            other => other.to_string(),
        };
        Problem::new(&private.key, format!("{why} (with {})", cert.key))
    })?;
    // The toolkit's default is the server's order (prefer_server_cipher_suites: true).
    config.ignore_client_order = section.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let names: Vec<String> = versions
        .iter()
        .map(|v| format!("{:?}", v.version).replace("v1_", "1."))
        .collect();
    let summary = format!(
        "{}, client certificates {}",
        names.join(" "),
        match client_auth {
            ClientAuth::None => "not asked for",
            ClientAuth::VerifyIfGiven => "verified if given",
            ClientAuth::RequireAndVerify => "required",
        }
    );
    Ok(Some(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        summary,
    }))
}

fn version(key: &str, name: &str) -> Result<&'static SupportedProtocolVersion, Problem> {
    match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(Problem::new(
            format!("{SECTION}.{key}"),
            format!("{name} is not supported: rustls speaks TLS12 and TLS13"),
        )),
        other => Err(Problem::new(
            format!("{SECTION}.{key}"),
            format!("unknown TLS version {other:?}: TLS12 or TLS13"),
        )),
    }
}

/// min_version (default TLS12) to max_version (default TLS13).
fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, Problem> {
    let min = version("min_version", min.unwrap_or("TLS12"))?;
    let max = version("max_version", max.unwrap_or("TLS13"))?;
    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    let from = all.iter().position(|v| v.version == min.version);
    let to = all.iter().position(|v| v.version == max.version);
    match (from, to) {
        (Some(from), Some(to)) if from <= to => Ok(all[from..=to].to_vec()),
        _ => Err(Problem::new(
            format!("{SECTION}.min_version"),
            "is above max_version",
        )),
    }
}

/// Go's names for the TLS 1.3 suites: Go does not let them be chosen
/// either, so the toolkit accepts and ignores them.
const TLS13_GO_NAMES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// *ring*'s provider, narrowed and ordered as the file asks: cipher_suites
/// choose among the TLS 1.2 suites (TLS 1.3's are always on, as in Go);
/// curve_preferences choose and order the key exchange groups.
fn provider(
    suites: Option<&[String]>,
    curves: Option<&[String]>,
) -> Result<CryptoProvider, Problem> {
    let mut provider = ring::default_provider();
    if let Some(names) = suites {
        let name = |s: &SupportedCipherSuite| format!("{:?}", s.suite());
        let tls12: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.tls13().is_none())
            .collect();
        let mut chosen: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.tls13().is_some())
            .collect();
        for wanted in names {
            if TLS13_GO_NAMES.contains(&wanted.as_str()) {
                continue;
            }
            let Some(suite) = tls12.iter().find(|s| name(s) == *wanted) else {
                let offered: Vec<String> = tls12.iter().map(name).collect();
                return Err(Problem::new(
                    format!("{SECTION}.cipher_suites"),
                    format!(
                        "{wanted:?} is not offered by rustls; TLS 1.2 suites it offers: {}",
                        offered.join(", ")
                    ),
                ));
            };
            if !chosen.iter().any(|c| c.suite() == suite.suite()) {
                chosen.push(*suite);
            }
        }
        provider.cipher_suites = chosen;
    }
    if let Some(names) = curves {
        let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for wanted in names {
            let group = match wanted.as_str() {
                "X25519" => NamedGroup::X25519,
                "CurveP256" => NamedGroup::secp256r1,
                "CurveP384" => NamedGroup::secp384r1,
                "CurveP521" => {
                    return Err(Problem::new(
                        format!("{SECTION}.curve_preferences"),
                        "CurveP521 is not offered by rustls with ring: X25519, CurveP256, CurveP384",
                    ));
                }
                other => {
                    return Err(Problem::new(
                        format!("{SECTION}.curve_preferences"),
                        format!("unknown curve {other:?}: X25519, CurveP256, CurveP384"),
                    ));
                }
            };
            if let Some(kx) = provider.kx_groups.iter().find(|k| k.name() == group)
                && !chosen.iter().any(|c| c.name() == group)
            {
                chosen.push(*kx);
            }
        }
        if chosen.is_empty() {
            return Err(Problem::new(
                format!("{SECTION}.curve_preferences"),
                "empty: leave the key out for the default",
            ));
        }
        provider.kx_groups = chosen;
    }
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use super::super::WebConfig;
    use std::path::{Path, PathBuf};

    /// A directory with a self-signed server.pem/.key and another key.
    fn files(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pfnwatch-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("server.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), cert.signing_key.serialize_pem()).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        dir
    }

    fn parse(dir: &Path, tls: &str) -> Result<String, String> {
        let text =
            format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{tls}");
        WebConfig::parse(&text, &dir.join("web.yml"))
            .map(|w| w.summary())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn versions_suites_and_curves_as_rustls_has_them() {
        let dir = files("ok");
        let ok = |tls: &str| parse(&dir, tls).unwrap();
        assert_eq!(
            ok(""),
            "https (TLS1.2 TLS1.3, client certificates not asked for)"
        );
        assert_eq!(
            ok("  min_version: TLS13\n"),
            "https (TLS1.3, client certificates not asked for)"
        );
        assert_eq!(
            ok(
                "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n  prefer_server_cipher_suites: false\n  curve_preferences: [CurveP256, X25519]\n"
            ),
            "https (TLS1.2, client certificates not asked for)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let dir = files("err");
        let web = dir.join("web.yml").display().to_string();
        let cases = [
            (
                "  client_auth_type: RequireAnyClientCert\n",
                "tls_server_config.client_auth_type: RequireAnyClientCert is not supported",
            ),
            (
                "  client_auth_type: Sometimes\n",
                "tls_server_config.client_auth_type: unknown \"Sometimes\"",
            ),
            (
                "  client_auth_type: RequireAndVerifyClientCert\n",
                "tls_server_config.client_ca_file: missing",
            ),
            (
                "  client_ca_file: server.pem\n",
                "tls_server_config.client_ca_file: client CAs are set but client_auth_type is NoClientCert",
            ),
            (
                "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: nope.pem\n",
                "tls_server_config.client_ca_file: reading ",
            ),
            (
                "  client_allowed_sans: [scraper]\n",
                "tls_server_config.client_allowed_sans: not supported",
            ),
            (
                "  min_version: TLS10\n",
                "tls_server_config.min_version: TLS10 is not supported",
            ),
            (
                "  max_version: TLS14\n",
                "tls_server_config.max_version: unknown TLS version \"TLS14\"",
            ),
            (
                "  min_version: TLS13\n  max_version: TLS12\n",
                "tls_server_config.min_version: is above max_version",
            ),
            (
                "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
                "tls_server_config.cipher_suites: \"TLS_RSA_WITH_AES_128_CBC_SHA\" is not offered by rustls",
            ),
            (
                "  curve_preferences: [CurveP521]\n",
                "tls_server_config.curve_preferences: CurveP521 is not offered",
            ),
            (
                "  cert: inline\n",
                "tls_server_config.cert_file: give cert_file or cert, not both",
            ),
        ];
        for (tls, want) in cases {
            let err = parse(&dir, tls).unwrap_err();
            let want = format!("{web}: {want}");
            assert!(err.starts_with(&want), "{tls}:\n got {err}\nwant {want}");
        }
        let only = |text: &str| {
            WebConfig::parse(text, &dir.join("web.yml"))
                .map(|w| w.summary())
                .map_err(|e| e.to_string())
        };
        let err = only("tls_server_config:\n  cert_file: server.pem\n").unwrap_err();
        assert!(
            err.starts_with(&format!("{web}: tls_server_config.key_file: missing")),
            "{err}"
        );
        let err = only("tls_server_config:\n  min_version: TLS13\n").unwrap_err();
        assert!(
            err.starts_with(&format!("{web}: tls_server_config.cert_file: missing")),
            "{err}"
        );
        let err = only("tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n")
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "{web}: tls_server_config.cert_file: reading {}: No such file or directory (os error 2)",
                dir.join("missing.pem").display()
            )
        );
        let err = only("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n")
            .unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{web}: tls_server_config.cert_file: no PEM CERTIFICATE in {}",
                dir.join("server.key").display()
            )),
            "{err}"
        );
        let err = only("tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n")
            .unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{web}: tls_server_config.key_file: no PEM PRIVATE KEY in "
            )),
            "{err}"
        );
        let err = only("tls_server_config:\n  cert_file: server.pem\n  key_file: other.key\n")
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "{web}: tls_server_config.key_file: not the private key of the certificate (with tls_server_config.cert_file)"
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

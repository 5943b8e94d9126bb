//! The web configuration file (`web.config_file`, `--web.config.file`): TLS
//! and basic auth for `/metrics`, in the Prometheus exporter toolkit's format
//! (its docs/web-configuration.md), so one file serves pfnwatch and the
//! node exporter alike. Read at start and on every SIGHUP, certificates
//! included; what pfnwatch cannot do is an error naming the key, never
//! silently ignored (README, "Metrics").
//!
//! Two passes: serde checks the shape (unknown keys, types: errors with the
//! line), then [`WebConfig::load`] checks the values and reads the files
//! they name (errors with the key).

use super::auth::BasicAuth;
use super::tls::{self, Tls};
use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The file as written. Every key of the toolkit's format is here, so a key
/// the toolkit knows and pfnwatch does not support gets its own message
/// rather than "unknown field".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Schema {
    tls_server_config: Option<TlsSchema>,
    http_server_config: Option<HttpSchema>,
    basic_auth_users: Option<Users>,
    rate_limit: Option<IgnoredAny>,
}

/// `tls_server_config`: empty strings count as absent, as in the toolkit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSchema {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_allowed_sans: Option<IgnoredAny>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSchema {
    /// pfnwatch serves HTTP/1.1 only; accepted so that a file written for
    /// another exporter works (Prometheus scrapes over HTTP/1.1 by default).
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// `basic_auth_users`, refusing a user given twice (the YAML parser would
/// keep the last one without a word).
#[derive(Debug, Default)]
struct Users(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct UsersVisitor;
        impl<'de> Visitor<'de> for UsersVisitor {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of user name to bcrypt hash")
            }
            fn visit_unit<E>(self) -> Result<Users, E> {
                Ok(Users::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Users, A::Error> {
                let mut users = BTreeMap::new();
                while let Some((user, hash)) = map.next_entry::<String, String>()? {
                    if users.contains_key(&user) {
                        return Err(serde::de::Error::custom(format!(
                            "user {user:?} is given twice"
                        )));
                    }
                    users.insert(user, hash);
                }
                Ok(Users(users))
            }
        }
        de.deserialize_any(UsersVisitor)
    }
}

/// Headers the toolkit lets a file add to every response, with the values
/// it accepts where they are an enumeration.
const HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

/// What the listener runs with: TLS or not, basic auth or not, extra
/// headers. The default (no file) is plain HTTP without auth.
#[derive(Default)]
pub struct WebConfig {
    /// The file it came from, for the log.
    pub path: Option<PathBuf>,
    pub tls: Option<Tls>,
    pub auth: Option<BasicAuth>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// A web configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `file:line: key: what is wrong`; the line only where the parser
    /// knew it (the file's shape), not for values checked after it.
    #[error("{path}{}: {key}{message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: String,
        line: Option<usize>,
        /// The dotted key, with ": " after it; empty at the top level.
        key: String,
        message: String,
    },
}

/// A value that is wrong: its dotted key and why.
pub(super) struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl WebConfig {
    /// Reads `path` and everything it names (certificates, keys, CAs).
    /// `None`: no file, plain HTTP.
    pub fn load(path: Option<&Path>) -> Result<WebConfig, WebConfigError> {
        let Some(path) = path else {
            return Ok(WebConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        WebConfig::parse(&text, path)
    }

    /// Parses the text of `path`; relative file names in it are relative
    /// to `path`'s directory, as in the toolkit.
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let schema = parse_schema(text, path)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        check(schema, dir)
            .map(|mut web| {
                web.path = Some(path.to_owned());
                web
            })
            .map_err(|p| WebConfigError::Invalid {
                path: path.display().to_string(),
                line: None,
                key: format!("{}: ", p.key),
                message: p.message,
            })
    }

    /// One line for the log and `--check-config`.
    pub fn summary(&self) -> String {
        let mut parts = vec![match &self.tls {
            Some(tls) => format!("https ({})", tls.summary),
            None => "http".to_owned(),
        }];
        if let Some(auth) = &self.auth {
            parts.push(format!("basic auth ({} users)", auth.users()));
        }
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
            parts.push(format!("headers {}", names.join(" ")));
        }
        parts.join(", ")
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

fn parse_schema(text: &str, path: &Path) -> Result<Schema, WebConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    // An empty file (or only comments) is a null document: no TLS, no auth,
    // as the toolkit reads it.
    let parsed: Result<Option<Schema>, _> = serde_path_to_error::deserialize(de);
    parsed.map(Option::unwrap_or_default).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.inner();
        let line = inner.location().map(|l| l.line());
        WebConfigError::Invalid {
            path: path.display().to_string(),
            line,
            key: if key.is_empty() || key == "." {
                String::new()
            } else {
                format!("{key}: ")
            },
            message: bare_message(&inner.to_string(), &key),
        }
    })
}

/// serde_norway's message without what the error already says elsewhere:
/// its own "path: " prefix and " at line L column C" suffix.
fn bare_message(message: &str, key: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    };
    match message.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && !head.contains(' ') && key.starts_with(head) => {
            rest.to_owned()
        }
        _ => message.to_owned(),
    }
}

/// The second pass: values, files, and keys pfnwatch does not support.
fn check(schema: Schema, dir: &Path) -> Result<WebConfig, Problem> {
    if schema.rate_limit.is_some() {
        return Err(Problem::new(
            "rate_limit",
            "not supported by pfnwatch (one Prometheus scrapes it; leave the key out)",
        ));
    }
    let tls = match schema.tls_server_config {
        Some(section) => tls::build(section, dir)?,
        None => None,
    };
    let http = schema.http_server_config.unwrap_or_default();
    let headers = check_headers(http.headers.unwrap_or_default())?;
    let users = schema.basic_auth_users.unwrap_or_default().0;
    let auth = if users.is_empty() {
        None
    } else {
        Some(BasicAuth::new(users)?)
    };
    Ok(WebConfig {
        path: None,
        tls,
        auth,
        headers,
    })
}

fn check_headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, Problem> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let key = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = HEADERS.iter().find(|(known, _)| *known == name) else {
            let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(Problem::new(
                key,
                format!("this header cannot be set; these can: {}", names.join(", ")),
            ));
        };
        // Blank: unset, as in the toolkit.
        if value.is_empty() {
            continue;
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(Problem::new(
                key,
                format!("{value:?} is not one of {}", allowed.join(", ")),
            ));
        }
        let value = HeaderValue::from_str(&value)
            .map_err(|_| Problem::new(&key, format!("{value:?} is not a valid header value")))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Problem::new(&key, "not a valid header name"))?;
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, String> {
        WebConfig::parse(text, Path::new("/etc/pfnwatch/web.yml")).map_err(|e| e.to_string())
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err()
    }

    /// `bcrypt::hash("secret", 4)`, cheap for tests.
    const HASH: &str = "$2b$04$Gb7LiETWM1e1XRnezBhzAuSSyTP7ZMAwhnpAZKoqN6uZDeDCbI6I.";

    #[test]
    fn an_empty_file_is_plain_http() {
        for text in ["", "# nothing\n", "tls_server_config:\nbasic_auth_users:\n"] {
            let web = parse(text).unwrap();
            assert!(web.tls.is_none() && web.auth.is_none(), "{text:?}");
            assert_eq!(web.summary(), "http");
        }
    }

    #[test]
    fn unknown_keys_name_the_file_line_and_key() {
        let e = err("basic_auth_users:\n  a: x\n\nbasic_auth_user:\n  b: y\n");
        assert!(
            e.starts_with(
                "/etc/pfnwatch/web.yml:4: basic_auth_user: unknown field `basic_auth_user`"
            ),
            "{e}"
        );
        let e = err("tls_server_config:\n  cert_file: a.crt\n  key_fil: a.key\n");
        assert!(
            e.starts_with("/etc/pfnwatch/web.yml:3: tls_server_config.key_fil: unknown field `key_fil`, expected one of"),
            "{e}"
        );
        let e = err("http_server_config:\n  header:\n    X-Frame-Options: deny\n");
        assert!(
            e.starts_with("/etc/pfnwatch/web.yml:2: http_server_config.header: unknown field"),
            "{e}"
        );
        let e = err("tls_server_config:\n  cipher_suites: TLS_AES_128_GCM_SHA256\n");
        assert!(
            e.starts_with(
                "/etc/pfnwatch/web.yml:2: tls_server_config.cipher_suites: invalid type: string"
            ),
            "{e}"
        );
        let e = err("tls_server_config: [\n");
        assert!(e.starts_with("/etc/pfnwatch/web.yml:"), "{e}");
    }

    #[test]
    fn bad_hashes_name_the_user() {
        let e = err(&format!(
            "basic_auth_users:\n  alice: {HASH}\n  bob: hunter2\n"
        ));
        assert_eq!(
            e,
            "/etc/pfnwatch/web.yml: basic_auth_users.bob: not a bcrypt hash (the hash format is malformed; expected 60 ASCII bytes); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
        );
        let e = err(&format!(
            "basic_auth_users:\n  alice: \"{}\"\n",
            HASH.replace("$04$", "$99$")
        ));
        assert!(
            e.starts_with("/etc/pfnwatch/web.yml: basic_auth_users.alice: cost 99"),
            "{e}"
        );
        let e = err(&format!("basic_auth_users:\n  \"a:b\": {HASH}\n"));
        assert!(
            e.contains("basic_auth_users.a:b: a user name cannot contain ':'"),
            "{e}"
        );
        let e = err(&format!("basic_auth_users:\n  a: {HASH}\n  a: {HASH}\n"));
        assert!(
            e.contains("basic_auth_users: user \"a\" is given twice"),
            "{e}"
        );
        let web = parse(&format!("basic_auth_users:\n  alice: {HASH}\n")).unwrap();
        assert_eq!(web.summary(), "http, basic auth (1 users)");
    }

    #[test]
    fn headers_are_the_toolkits_with_its_values() {
        let web = parse(
            "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
             Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: \"\"\n",
        )
        .unwrap();
        let names: Vec<&str> = web.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["strict-transport-security", "x-frame-options"]);
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert_eq!(
            e,
            "/etc/pfnwatch/web.yml: http_server_config.headers.X-Frame-Options: \"allow\" is not one of deny, sameorigin"
        );
        let e = err("http_server_config:\n  headers:\n    Server: pfnwatch\n");
        assert!(
            e.starts_with(
                "/etc/pfnwatch/web.yml: http_server_config.headers.Server: this header cannot be set"
            ),
            "{e}"
        );
    }

    #[test]
    fn what_pfnwatch_does_not_support_is_named() {
        let e = err("rate_limit:\n  interval: 1s\n  burst: 5\n");
        assert!(
            e.starts_with("/etc/pfnwatch/web.yml: rate_limit: not supported"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = WebConfig::load(Some(Path::new("/nonexistent/web.yml"))).unwrap_err();
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e)),
            "reading /nonexistent/web.yml: No such file or directory (os error 2)"
        );
        assert_eq!(WebConfig::load(None).unwrap().summary(), "http");
    }

    #[test]
    fn parser_messages_lose_their_own_path_and_position() {
        assert_eq!(
            bare_message(
                "tls_server_config: unknown field `x`, expected `y` at line 2 column 3",
                "tls_server_config.x"
            ),
            "unknown field `x`, expected `y`"
        );
        assert_eq!(
            bare_message("unknown field `foo`, expected one of `a`", "foo"),
            "unknown field `foo`, expected one of `a`"
        );
    }
}

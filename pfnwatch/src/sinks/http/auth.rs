//! `basic_auth_users`: HTTP basic auth against bcrypt hashes.
//!
//! Timing: an unknown user is checked against a dummy hash of the highest
//! configured cost, so a refusal takes as long whether the user exists or
//! not; bcrypt compares in constant time. bcrypt runs on the blocking pool,
//! one at a time (a flood of wrong passwords costs one core, never the
//! daemon's loop). A password bcrypt accepted is remembered per user as an
//! HMAC under a key made at load, so a scrape every few seconds does not
//! pay bcrypt each time; the HMAC is compared in constant time too, and
//! the cache holds at most one entry per configured user.

use super::web_config::Problem;
use axum::http::{HeaderMap, header};
use base64::Engine;
use ring::hmac;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// What `WWW-Authenticate` asks for on a 401.
pub const CHALLENGE: &str = "Basic realm=\"pfnwatch\", charset=\"UTF-8\"";

/// bcrypt's cost bounds (the crate refuses others at verification).
const COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// The users and their hashes, checked at load.
pub struct BasicAuth {
    inner: Arc<Inner>,
}

struct Inner {
    users: BTreeMap<String, String>,
    /// Checked for unknown users: never matches, costs what a real one does.
    dummy: String,
    /// Passwords bcrypt accepted, per user.
    accepted: Mutex<HashMap<String, hmac::Tag>>,
    key: hmac::Key,
    /// One bcrypt at a time.
    bcrypt: Semaphore,
}

impl BasicAuth {
    /// Checks every hash (named by `basic_auth_users.USER` when wrong).
    pub(super) fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, Problem> {
        let mut max_cost = 0;
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(Problem::new(
                    key,
                    "a user name cannot contain ':' (basic auth splits there)",
                ));
            }
            let parts = bcrypt::HashParts::from_str(hash).map_err(|e| {
                Problem::new(
                    &key,
                    format!(
                        "not a bcrypt hash ({}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`",
                        bcrypt_reason(&e)
                    ),
                )
            })?;
            let cost = parts.get_cost();
            if !COSTS.contains(&cost) {
                return Err(Problem::new(
                    key,
                    format!(
                        "cost {cost} is outside bcrypt's {}..={}",
                        COSTS.start(),
                        COSTS.end()
                    ),
                ));
            }
            max_cost = max_cost.max(cost);
        }
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| Problem::new("basic_auth_users", "no randomness for the cache key"))?;
        Ok(BasicAuth {
            inner: Arc::new(Inner {
                // A salt and hash of zero bits: valid, and no password's.
                dummy: format!("$2y${max_cost:02}${}", ".".repeat(53)),
                users,
                accepted: Mutex::new(HashMap::new()),
                key,
                bcrypt: Semaphore::new(1),
            }),
        })
    }

    pub fn users(&self) -> usize {
        self.inner.users.len()
    }

    /// Whether the request's `Authorization` names a user and the password
    /// its hash was made from.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = credentials(headers) else {
            return false;
        };
        let inner = &self.inner;
        let known = inner.users.get(&user);
        if known.is_some() && inner.remembered(&user, &password) {
            return true;
        }
        let hash = known.unwrap_or(&inner.dummy).clone();
        let Ok(_one_at_a_time) = inner.bcrypt.acquire().await else {
            return false;
        };
        let checked = {
            let password = password.clone();
            // bcrypt takes tens of milliseconds at cost 10: not on the loop.
            tokio::task::spawn_blocking(move || {
                // Passwords of 72 bytes or more are refused: bcrypt would
                // read only their first 72.
                bcrypt::non_truncating_verify(&password, &hash).unwrap_or(false)
            })
            .await
            .unwrap_or(false)
        };
        let ok = checked && known.is_some();
        if ok {
            inner.remember(user, &password);
        }
        ok
    }
}

impl Inner {
    fn remembered(&self, user: &str, password: &[u8]) -> bool {
        let accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        accepted
            .get(user)
            .is_some_and(|tag| hmac::verify(&self.key, password, tag.as_ref()).is_ok())
    }

    fn remember(&self, user: String, password: &[u8]) {
        let tag = hmac::sign(&self.key, password);
        let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        accepted.insert(user, tag);
    }
}

/// `Authorization: Basic base64(user:password)`, the scheme in any case.
fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// The crate's reason without its "Invalid hash: " prefix.
fn bcrypt_reason(e: &bcrypt::BcryptError) -> String {
    match e {
        bcrypt::BcryptError::InvalidHash(why) => (*why).to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(user: &str, password: &str) -> HeaderMap {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        h
    }

    fn auth(cost: u32) -> BasicAuth {
        let users = BTreeMap::from([(
            "prometheus".to_owned(),
            bcrypt::hash("s3cret", cost).unwrap(),
        )]);
        BasicAuth::new(users).ok().unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_right_password_and_no_other() {
        let auth = auth(4);
        assert!(auth.allows(&headers("prometheus", "s3cret")).await);
        // Remembered, and still only that password.
        assert!(auth.allows(&headers("prometheus", "s3cret")).await);
        assert!(!auth.allows(&headers("prometheus", "s3cret ")).await);
        assert!(!auth.allows(&headers("prometheus", "")).await);
        assert!(!auth.allows(&headers("Prometheus", "s3cret")).await);
        assert!(!auth.allows(&headers("nobody", "s3cret")).await);
        assert!(!auth.allows(&HeaderMap::new()).await);
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(!auth.allows(&bearer).await);
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(!auth.allows(&garbage).await);
        // bcrypt reads 72 bytes: a longer password sharing them is refused.
        let long = "x".repeat(72);
        let users = BTreeMap::from([("u".to_owned(), bcrypt::hash(&long, 4).unwrap())]);
        let auth = BasicAuth::new(users).ok().unwrap();
        assert!(!auth.allows(&headers("u", &format!("{long}y"))).await);
    }

    #[test]
    fn an_unknown_user_is_checked_against_a_hash_of_the_highest_cost() {
        // The refusal of an unknown user runs bcrypt as a known one's does
        // (no timing in the test: the property that makes the times equal).
        let users = BTreeMap::from([
            ("a".to_owned(), bcrypt::hash("x", 4).unwrap()),
            ("b".to_owned(), bcrypt::hash("y", 6).unwrap()),
        ]);
        let auth = BasicAuth::new(users).ok().unwrap();
        let dummy = &auth.inner.dummy;
        assert_eq!(bcrypt::HashParts::from_str(dummy).unwrap().get_cost(), 6);
        // A valid hash that no password matches: bcrypt runs in full, where
        // an invalid one would return an error at once.
        assert!(!bcrypt::non_truncating_verify("", dummy).unwrap());
        assert!(!bcrypt::non_truncating_verify("wrong", dummy).unwrap());
    }
}

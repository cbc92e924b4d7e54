//! Callers' identity end to end: hosts started with `--auth` settings (HS256 and RS256
//! JWTs, API keys), real tokens signed in the test, the real bank plugins over HTTP.
//!
//! What it shows: a request without a token, with a bad signature, expired, for
//! another audience or issuer is refused with 401 and the JSON error body; a forged
//! `Tessera-Principal` is refused and never becomes the principal; a verified token's
//! `sub` is the events' principal and its claims reach the handler (the bank refuses a
//! withdrawal by someone who is not the owner, and lets a teller through); two callers
//! can use one idempotency key without clashing; API keys work; the admin endpoints
//! keep their own token.

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera::auth::{AuthConfig, JwtConfig};

use crate::common::{Reply, TestHost, plugins};

const SECRET: &[u8] = b"a-test-only-hs256-secret-32-bytes-or-more";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "tessera-test";
const ADMIN_TOKEN: &str = "the-admin-token";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/auth/{name}"))
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims that the JWT host accepts, for `sub`, with `extra` merged in (a null removes
/// a claim).
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
        "iat": now(),
    });
    for (key, value) in extra.as_object().expect("an object") {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn hs256(claims: &Value) -> String {
    hs256_with(claims, SECRET)
}

fn hs256_with(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn rs256(claims: &Value) -> String {
    let pem = std::fs::read(fixture("rsa-private.pem")).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// A host serving the bank with `auth`, and the admin token.
async fn host_with(auth: impl FnOnce(&std::path::Path) -> AuthConfig) -> TestHost {
    let dir = Arc::new(TempDir::new().unwrap());
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    for plugin in [
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE,
        plugins::BANK_TOTALS,
        plugins::BANK_QUERIES,
    ] {
        let name = std::path::Path::new(plugin).file_name().unwrap();
        std::fs::copy(plugin, plugins_dir.join(name)).unwrap();
    }
    let auth = auth(dir.path());
    TestHost::start_configured(dir, move |config| {
        config.auth = auth;
        config.admin_token = Some(ADMIN_TOKEN.into());
    })
    .await
    .expect("host starts")
}

/// A host accepting HS256 tokens (secret file) and RS256 tokens (PEM public key), with
/// an issuer and an audience.
async fn jwt_host() -> TestHost {
    host_with(|dir| {
        let secret = dir.join("hs256.secret");
        std::fs::write(&secret, [SECRET, b"\n"].concat()).unwrap();
        AuthConfig {
            jwt: Some(JwtConfig {
                hs256_secret_file: Some(secret),
                rs256_public_key: Some(fixture("rsa-public.pem")),
                issuer: Some(ISSUER.into()),
                audience: Some(AUDIENCE.into()),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        }
    })
    .await
}

/// Sends `command` for `aggregate_id` with `token` (none: no Authorization header) and
/// extra headers.
async fn send(
    host: &TestHost,
    token: Option<&str>,
    command: &str,
    aggregate_id: &str,
    payload: Value,
    headers: &[(&str, &str)],
) -> Reply {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(bearer) = &bearer {
        all.push(("authorization", bearer));
    }
    host.send(
        command,
        &json!({ "aggregate_id": aggregate_id, "payload": payload }),
        &all,
    )
    .await
    .unwrap()
}

async fn get(host: &TestHost, token: Option<&str>, path: &str) -> Reply {
    let mut request = host.client.get(format!("{}{path}", host.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await.unwrap()).await.unwrap()
}

#[track_caller]
fn assert_unauthorized(reply: &Reply, reason: &str) {
    reply.assert_error(401, "unauthorized");
    assert_eq!(
        reply.body["error"]["details"]["reason"], reason,
        "{}",
        reply.body
    );
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_refused_with_401() {
    let host = jwt_host().await;
    let open = |token: Option<String>| {
        let host = &host;
        async move {
            send(
                host,
                token.as_deref(),
                "open-account",
                "a1",
                json!({"owner": "ada"}),
                &[],
            )
            .await
        }
    };
    let reply = open(None).await;
    assert_unauthorized(&reply, "missing_token");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"tessera\"")
    );
    assert_unauthorized(
        &open(Some(hs256_with(
            &claims("ada", json!({})),
            b"another-secret-another-secret-another",
        )))
        .await,
        "bad_signature",
    );
    let expired = open(Some(hs256(&claims("ada", json!({"exp": now() - 3600}))))).await;
    assert_unauthorized(&expired, "expired");
    assert!(
        expired
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    assert_unauthorized(
        &open(Some(hs256(&claims(
            "ada",
            json!({"aud": "another-service"}),
        ))))
        .await,
        "wrong_audience",
    );
    assert_unauthorized(
        &open(Some(hs256(&claims("ada", json!({"aud": null}))))).await,
        "bad_claims",
    );
    assert_unauthorized(
        &open(Some(hs256(&claims(
            "ada",
            json!({"iss": "https://evil.test"}),
        ))))
        .await,
        "wrong_issuer",
    );
    assert_unauthorized(
        &open(Some(hs256(&claims("ada", json!({"nbf": now() + 3600}))))).await,
        "not_yet_valid",
    );
    assert_unauthorized(
        &open(Some(hs256(&claims("ada", json!({"exp": null}))))).await,
        "bad_claims",
    );
    assert_unauthorized(&open(Some("not-a-token".into())).await, "malformed_token");
    // Basic credentials are not a bearer token.
    let basic = host
        .send(
            "open-account",
            &json!({"aggregate_id": "a1", "payload": {"owner": "ada"}}),
            &[("authorization", "Basic YWRhOnNlY3JldA==")],
        )
        .await
        .unwrap();
    assert_unauthorized(&basic, "malformed_token");
    // Queries and the log are guarded too; the operational endpoints are not.
    assert_unauthorized(
        &get(&host, None, "/queries/account?id=a1").await,
        "missing_token",
    );
    assert_unauthorized(&get(&host, None, "/events").await, "missing_token");
    assert_unauthorized(
        &get(&host, None, "/streams/account-a1").await,
        "missing_token",
    );
    assert_unauthorized(&get(&host, None, "/events/stream").await, "missing_token");
    for open_path in [
        "/health",
        "/plugins",
        "/projections",
        "/queries",
        "/openapi.json",
    ] {
        let reply = get(&host, None, open_path).await;
        assert_eq!(reply.status, 200, "{open_path}: {}", reply.body);
    }
    // Readiness may still be 503 while projections catch up, but never asks for a token.
    assert_ne!(get(&host, None, "/ready").await.status, 401);
    // Nothing was appended by any of the refused requests.
    let token = hs256(&claims("ada", json!({})));
    let log = get(&host, Some(&token), "/events").await;
    assert_eq!(log.ok()["events"], json!([]), "{}", log.body);
}

#[tokio::test]
async fn the_verified_subject_is_the_principal_and_its_claims_reach_the_handler() {
    let host = jwt_host().await;
    let ada = hs256(&claims("ada", json!({"roles": ["customer"]})));
    // RS256, signed with the test key pair's private key.
    let grace = rs256(&claims("grace", json!({})));
    let teller = hs256(&claims("tom", json!({"roles": ["teller"]})));

    send(
        &host,
        Some(&ada),
        "open-account",
        "a1",
        json!({"owner": "ada"}),
        &[],
    )
    .await
    .ok();
    send(
        &host,
        Some(&grace),
        "deposit",
        "a1",
        json!({"amount": 100}),
        &[],
    )
    .await
    .ok();
    // Grace is not the owner: the handler, seeing her principal, refuses.
    let refused = send(
        &host,
        Some(&grace),
        "withdraw",
        "a1",
        json!({"amount": 10}),
        &[],
    )
    .await;
    refused.assert_error(422, "rejected");
    assert_eq!(refused.body["error"]["details"]["reason"], "not_owner");
    // The owner may; so may a teller, whose role the handler reads from the claims.
    send(
        &host,
        Some(&ada),
        "withdraw",
        "a1",
        json!({"amount": 10}),
        &[],
    )
    .await
    .ok();
    send(
        &host,
        Some(&teller),
        "withdraw",
        "a1",
        json!({"amount": 5}),
        &[],
    )
    .await
    .ok();

    // A forged principal header is refused, with a valid token or without one.
    let forged = send(
        &host,
        Some(&grace),
        "withdraw",
        "a1",
        json!({"amount": 1}),
        &[("tessera-principal", "ada")],
    )
    .await;
    forged.assert_error(400, "bad_request");
    assert!(
        forged.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Tessera-Principal")
    );
    let forged = send(
        &host,
        None,
        "withdraw",
        "a1",
        json!({"amount": 1}),
        &[("tessera-principal", "ada")],
    )
    .await;
    assert_unauthorized(&forged, "missing_token");

    // The events say who did what, with the verified claims.
    let stream = get(&host, Some(&ada), "/streams/account-a1").await;
    let events = stream.ok()["events"].as_array().unwrap().clone();
    let who: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["metadata"]["principal"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("AccountOpened", "ada"),
            ("Deposited", "grace"),
            ("Withdrawn", "ada"),
            ("Withdrawn", "tom"),
        ]
    );
    assert_eq!(events[0]["metadata"]["claims"]["sub"], "ada");
    assert_eq!(
        events[0]["metadata"]["claims"]["roles"],
        json!(["customer"])
    );
    assert_eq!(events[0]["metadata"]["claims"]["aud"], AUDIENCE);
    assert_eq!(events[3]["metadata"]["claims"]["roles"], json!(["teller"]));

    // Queries answer for a verified caller.
    let account = get(&host, Some(&grace), "/queries/account?id=a1").await;
    assert_eq!(account.ok()["balance"], 85, "{}", account.body);
}

#[tokio::test]
async fn two_callers_can_use_one_idempotency_key() {
    let host = jwt_host().await;
    let ada = hs256(&claims("ada", json!({})));
    let grace = hs256(&claims("grace", json!({})));
    send(
        &host,
        Some(&ada),
        "open-account",
        "a1",
        json!({"owner": "ada"}),
        &[],
    )
    .await
    .ok();
    send(
        &host,
        Some(&grace),
        "open-account",
        "g1",
        json!({"owner": "grace"}),
        &[],
    )
    .await
    .ok();
    let key = [("idempotency-key", "same-key")];
    let first = send(
        &host,
        Some(&ada),
        "deposit",
        "a1",
        json!({"amount": 5}),
        &key,
    )
    .await;
    first.ok();
    // Grace's command with the same key is hers: decided and appended, not a replay of
    // Ada's, and not refused as a mismatch.
    let second = send(
        &host,
        Some(&grace),
        "deposit",
        "g1",
        json!({"amount": 7}),
        &key,
    )
    .await;
    assert_eq!(second.ok()["stream"], "account-g1");
    assert_eq!(second.header("idempotent-replayed"), None);
    // Each caller's retry replays their own first result.
    let again = send(
        &host,
        Some(&ada),
        "deposit",
        "a1",
        json!({"amount": 5}),
        &key,
    )
    .await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.ok()["position"], first.ok()["position"]);
    let again = send(
        &host,
        Some(&grace),
        "deposit",
        "g1",
        json!({"amount": 7}),
        &key,
    )
    .await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.ok()["position"], second.ok()["position"]);
    // Within one caller's scope the key still guards against another command, and the
    // error names the client's key as sent.
    let mismatch = send(
        &host,
        Some(&ada),
        "deposit",
        "a1",
        json!({"amount": 6}),
        &key,
    )
    .await;
    mismatch.assert_error(422, "idempotency_mismatch");
    let message = mismatch.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"same-key\""), "{message}");
    let log = get(&host, Some(&ada), "/events").await;
    assert_eq!(log.ok()["events"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn api_keys_and_jwts_together_and_a_required_role() {
    let host = host_with(|dir| {
        let secret = dir.join("hs256.secret");
        std::fs::write(&secret, SECRET).unwrap();
        let keys = dir.join("api-keys.json");
        let digest = hex_sha256(b"grace-key");
        std::fs::write(
            &keys,
            json!([
                {"key": "ada-key", "principal": "ada", "roles": ["customer"]},
                {"key_sha256": digest, "principal": "grace", "roles": ["customer"]},
                {"key": "visitor-key", "principal": "visitor"},
            ])
            .to_string(),
        )
        .unwrap();
        AuthConfig {
            jwt: Some(JwtConfig {
                hs256_secret_file: Some(secret),
                ..JwtConfig::default()
            }),
            api_keys_file: Some(keys),
            required_role: Some("customer".into()),
        }
    })
    .await;
    send(
        &host,
        Some("ada-key"),
        "open-account",
        "a1",
        json!({"owner": "ada"}),
        &[],
    )
    .await
    .ok();
    // The key in the file as a digest works like one in the clear.
    let refused = send(
        &host,
        Some("grace-key"),
        "withdraw",
        "a1",
        json!({"amount": 1}),
        &[],
    )
    .await;
    assert_eq!(refused.body["error"]["details"]["reason"], "not_owner");
    assert_unauthorized(
        &send(
            &host,
            Some("wrong-key"),
            "deposit",
            "a1",
            json!({"amount": 1}),
            &[],
        )
        .await,
        "unknown_api_key",
    );
    // A verified caller without the required role is forbidden, not unauthorized.
    let forbidden = send(
        &host,
        Some("visitor-key"),
        "deposit",
        "a1",
        json!({"amount": 1}),
        &[],
    )
    .await;
    forbidden.assert_error(403, "forbidden");
    assert_eq!(forbidden.body["error"]["details"]["reason"], "missing_role");
    assert!(
        forbidden
            .header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    let no_role = hs256(&json!({"sub": "zoe", "exp": now() + 600}));
    send(
        &host,
        Some(&no_role),
        "deposit",
        "a1",
        json!({"amount": 1}),
        &[],
    )
    .await
    .assert_error(403, "forbidden");
    let customer = hs256(&json!({"sub": "zoe", "exp": now() + 600, "roles": ["customer"]}));
    send(
        &host,
        Some(&customer),
        "deposit",
        "a1",
        json!({"amount": 3}),
        &[],
    )
    .await
    .ok();
    let events = get(&host, Some("ada-key"), "/streams/account-a1").await;
    let events = events.ok()["events"].as_array().unwrap().clone();
    assert_eq!(events[0]["metadata"]["principal"], "ada");
    assert_eq!(
        events[0]["metadata"]["claims"],
        json!({"sub": "ada", "roles": ["customer"]})
    );
    assert_eq!(events[1]["metadata"]["principal"], "zoe");
}

#[tokio::test]
async fn the_admin_endpoints_keep_their_own_token() {
    let host = jwt_host().await;
    let caller = hs256(&claims("ada", json!({"roles": ["admin"]})));
    // A caller's token, however valid, is not the admin token.
    host.rollback("bank-account", Some(&caller))
        .await
        .unwrap()
        .assert_error(401, "unauthorized");
    // The admin token is let in (and there is nothing to roll back to).
    host.rollback("bank-account", Some(ADMIN_TOKEN))
        .await
        .unwrap()
        .assert_error(409, "no_previous_version");
    // And the admin token is not a caller's token.
    assert_unauthorized(
        &get(&host, Some(ADMIN_TOKEN), "/events").await,
        "malformed_token",
    );
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

//! Callers' identity: who sends a command or asks a query, verified from a bearer token.
//!
//! Authentication is off unless [`AuthConfig`] turns on one method or both:
//! - **JWT** (`--auth jwt`): a token signed with an HS256 secret, an RS256 public key
//!   (PEM), or a key of a JWKS file picked by the token's `kid`. The signature, `exp`
//!   (always required), `nbf` (when present), and the issuer and audience (when
//!   configured) are checked, with [`LEEWAY`] for clock skew. The principal is `sub`.
//! - **API keys** (`--auth api-keys`): a JSON file of keys, each with its principal and
//!   roles (format in [`ApiKeys::parse`]). Keys are compared by their SHA-256 digests,
//!   in constant time, so the file can hold digests rather than keys.
//!
//! What it guarantees: a [`Caller`] exists only for a token that passed every check;
//! its principal is never empty, at most [`MAX_PRINCIPAL`] bytes and free of control
//! characters; its claims are a JSON object that nests at most [`crate::json::MAX_DEPTH`]
//! deep and is at most [`MAX_CLAIMS`] bytes. A token is verified only with a key of its
//! own algorithm's family (an RSA public key is never taken as an HMAC secret).
//! Keys are read once, when the host starts. Nothing here knows HTTP: the axum side is
//! `http::auth`.

use std::path::{Path, PathBuf};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Seconds of clock skew allowed when checking `exp` and `nbf`.
pub const LEEWAY: u64 = 30;
/// The longest principal accepted, in bytes.
pub const MAX_PRINCIPAL: usize = 256;
/// The largest claims accepted, as JSON text, in bytes: they travel with every event.
pub const MAX_CLAIMS: usize = 8 * 1024;
/// The shortest HS256 secret accepted: RFC 7518 asks for a key as long as the hash.
pub const MIN_HS256_SECRET: usize = 32;

/// How the host authenticates callers. The default is off: no token is asked for, and
/// the principal is whatever `Tessera-Principal` header a client (or a proxy in front)
/// sends.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Accept JWTs verified with these keys.
    pub jwt: Option<JwtConfig>,
    /// Accept the API keys of this file.
    pub api_keys_file: Option<PathBuf>,
    /// When set, an authenticated caller must also carry this role (the `roles`
    /// claim, or the key's roles), else it is refused with 403.
    pub required_role: Option<String>,
}

impl AuthConfig {
    /// Whether any method is on.
    pub fn is_on(&self) -> bool {
        self.jwt.is_some() || self.api_keys_file.is_some()
    }
}

/// Where the JWT keys are and what the tokens must say. At least one key source.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// A file holding the HS256 secret (its bytes, less a trailing newline).
    pub hs256_secret_file: Option<PathBuf>,
    /// A PEM file holding the RS256 public key.
    pub rs256_public_key: Option<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`); a token names its key with `kid`.
    pub jwks: Option<PathBuf>,
    /// The `iss` every token must carry, when set.
    pub issuer: Option<String>,
    /// The `aud` every token must include, when set. Unset, `aud` is not checked.
    pub audience: Option<String>,
}

/// Why authentication could not be set up; the host does not start. Fix the file or
/// the flags it names.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key file holds no usable key, or a malformed one.
    #[error("{path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
    /// `--auth jwt` without any key source.
    #[error("--auth jwt needs --jwt-hs256-secret-file, --jwt-rs256-public-key or --jwt-jwks")]
    NoJwtKey,
}

/// Why a request is not let in. Every variant but [`AuthError::MissingRole`] means the
/// caller is not authenticated (401: send a valid token); `MissingRole` means it is,
/// but may not act here (403: use another identity).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs a caller's token: Authorization: Bearer <token>")]
    Missing,
    #[error("the Authorization header is not a bearer token: {0}")]
    Malformed(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is not meant for this host (aud)")]
    WrongAudience,
    #[error("the token was issued by another issuer (iss)")]
    WrongIssuer,
    #[error("no key verifies this token: {0}")]
    UnknownKey(String),
    #[error("the token's claims are not acceptable: {0}")]
    BadClaims(String),
    #[error("the API key is not known")]
    UnknownApiKey,
    #[error("the caller {principal:?} lacks the role {role:?}")]
    MissingRole { principal: String, role: String },
}

impl AuthError {
    /// A stable, machine-readable reason (the error body's `details.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed(_) => "malformed_token",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::BadClaims(_) => "bad_claims",
            AuthError::UnknownApiKey => "unknown_api_key",
            AuthError::MissingRole { .. } => "missing_role",
        }
    }

    /// True when the caller is authenticated but not allowed (403), false when it is
    /// not authenticated (401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::MissingRole { .. })
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Jwt,
    ApiKey,
}

/// A verified caller: its principal and its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    principal: String,
    claims: Map<String, Value>,
    method: Method,
}

impl Caller {
    /// The caller's identity: the token's `sub`, or the API key's principal.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The verified claims: a JWT's payload as it is; for an API key
    /// `{"sub": principal, "roles": [...]}`.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The claims as JSON text, as handlers receive them.
    pub fn claims_json(&self) -> String {
        Value::Object(self.claims.clone()).to_string()
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// The strings of the `roles` claim (anything else in it is ignored).
    pub fn roles(&self) -> Vec<&str> {
        match self.claims.get("roles") {
            Some(Value::Array(roles)) => roles.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    fn new(claims: Map<String, Value>, method: Method) -> Result<Caller, AuthError> {
        let principal = match claims.get("sub") {
            Some(Value::String(sub)) => sub.clone(),
            Some(_) => return Err(AuthError::BadClaims("sub must be a string".into())),
            None => return Err(AuthError::BadClaims("sub is missing".into())),
        };
        if principal.is_empty()
            || principal.len() > MAX_PRINCIPAL
            || principal.chars().any(char::is_control)
        {
            return Err(AuthError::BadClaims(format!(
                "sub must be 1 to {MAX_PRINCIPAL} bytes without control characters"
            )));
        }
        let caller = Caller {
            principal,
            claims,
            method,
        };
        let json = caller.claims_json();
        if json.len() > MAX_CLAIMS {
            return Err(AuthError::BadClaims(format!(
                "the claims are larger than {MAX_CLAIMS} bytes"
            )));
        }
        if crate::json::check(&json).is_err() {
            return Err(AuthError::BadClaims(format!(
                "the claims nest deeper than {} levels",
                crate::json::MAX_DEPTH
            )));
        }
        Ok(caller)
    }
}

/// Verifies bearer tokens by the methods configured.
#[derive(Debug)]
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    api_keys: Option<ApiKeys>,
    required_role: Option<String>,
}

impl Authenticator {
    /// Reads the keys `config` names; none when authentication is off.
    pub fn load(config: &AuthConfig) -> Result<Option<Authenticator>, SetupError> {
        if !config.is_on() {
            return Ok(None);
        }
        let jwt = config.jwt.as_ref().map(JwtVerifier::load).transpose()?;
        let api_keys = config
            .api_keys_file
            .as_deref()
            .map(|path| ApiKeys::parse(path, &read(path)?))
            .transpose()?;
        Ok(Some(Authenticator {
            jwt,
            api_keys,
            required_role: config.required_role.clone(),
        }))
    }

    /// The caller an `Authorization` header value proves, if it does.
    ///
    /// A token shaped like a JWT (three dot-separated parts) is verified as one when
    /// JWTs are on; any other token is looked up as an API key when those are on.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = bearer(header)?;
        let caller = match (&self.jwt, &self.api_keys) {
            (Some(jwt), _) if looks_like_jwt(token) => jwt.verify(token)?,
            (_, Some(keys)) => keys.verify(token)?,
            (Some(_), None) => {
                return Err(AuthError::Malformed(
                    "expected a JWT (header.payload.signature)".into(),
                ));
            }
            (None, None) => unreachable!("an authenticator has a method"),
        };
        if let Some(role) = &self.required_role
            && !caller.roles().contains(&role.as_str())
        {
            return Err(AuthError::MissingRole {
                principal: caller.principal,
                role: role.clone(),
            });
        }
        Ok(caller)
    }
}

/// The token of `Bearer <token>` (the scheme in any case, as RFC 7235 says).
fn bearer(header: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or_else(|| AuthError::Malformed("expected Bearer <token>".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(format!(
            "the scheme must be Bearer, not {scheme:?}"
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed("the token is empty".into()));
    }
    Ok(token)
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

fn read(path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A key a token may be verified with.
struct VerifyingKey {
    /// Its JWKS `kid`; none for the keys given as files.
    kid: Option<String>,
    /// The algorithms it verifies: one for the file keys, the JWK's `alg` or else its
    /// family's for a JWKS key.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// Verifies JWTs against the configured keys and claims.
struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtVerifier {
    fn load(config: &JwtConfig) -> Result<JwtVerifier, SetupError> {
        let mut keys = Vec::new();
        if let Some(path) = &config.hs256_secret_file {
            let mut secret = read(path)?;
            // A secret written with `echo` ends in a newline that is not part of it.
            while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                secret.pop();
            }
            if secret.len() < MIN_HS256_SECRET {
                return Err(bad_key(
                    path,
                    format!("an HS256 secret must be at least {MIN_HS256_SECRET} bytes"),
                ));
            }
            let key = DecodingKey::from_secret(&secret).map_err(|e| bad_key(path, e))?;
            keys.push(VerifyingKey {
                kid: None,
                algorithms: vec![Algorithm::HS256],
                key,
            });
        }
        if let Some(path) = &config.rs256_public_key {
            let key = DecodingKey::from_rsa_pem(&read(path)?).map_err(|e| bad_key(path, e))?;
            keys.push(VerifyingKey {
                kid: None,
                algorithms: vec![Algorithm::RS256],
                key,
            });
        }
        if let Some(path) = &config.jwks {
            keys.extend(jwks_keys(path, &read(path)?)?);
        }
        if keys.is_empty() {
            return Err(SetupError::NoJwtKey);
        }
        Ok(JwtVerifier {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(format!("not a JWT: {e}")))?;
        // A key fits when it verifies the token's algorithm and, if both name a key
        // id, the same one.
        let fitting = self.keys.iter().filter(|key| {
            key.algorithms.contains(&header.alg)
                && match (&header.kid, &key.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        let validation = self.validation(header.alg);
        let mut outcome = Err(AuthError::UnknownKey(match &header.kid {
            Some(kid) => format!("no {:?} key with kid {kid:?}", header.alg),
            None => format!("no {:?} key", header.alg),
        }));
        for key in fitting {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return Caller::new(data.claims, Method::Jwt),
                // Another fitting key may be the one (keys without a kid).
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    outcome = Err(AuthError::BadSignature);
                }
                Err(e) => return Err(jwt_error(e.kind())),
            }
        }
        outcome
    }
}

fn jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::BadClaims(format!("{claim} is missing"))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::BadClaims(format!("{claim} is malformed"))
        }
        ErrorKind::InvalidAlgorithm => {
            AuthError::UnknownKey("the key does not verify the token's algorithm".into())
        }
        ErrorKind::Json(e) => {
            AuthError::Malformed(format!("the claims are not a JSON object: {e}"))
        }
        other => AuthError::Malformed(format!("{other:?}")),
    }
}

fn bad_key(path: &Path, reason: impl std::fmt::Display) -> SetupError {
    SetupError::BadKey {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The signing keys of a JWKS document. Keys meant for encryption are left out; a key
/// of a kind this host cannot verify with fails the start rather than every token.
fn jwks_keys(path: &Path, bytes: &[u8]) -> Result<Vec<VerifyingKey>, SetupError> {
    let set: JwkSet = serde_json::from_slice(bytes)
        .map_err(|e| bad_key(path, format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let name = kid.as_deref().unwrap_or("without kid");
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if matches!(jwk.algorithm, AlgorithmParameters::Other(_)) || !jwk.is_supported() {
            return Err(bad_key(path, format!("key {name}: unsupported key type")));
        }
        let key =
            DecodingKey::from_jwk(jwk).map_err(|e| bad_key(path, format!("key {name}: {e}")))?;
        let algorithms = match &jwk.common.key_algorithm {
            Some(alg) => {
                let text = serde_json::to_value(alg)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let algorithm: Algorithm = text
                    .parse()
                    .map_err(|_| bad_key(path, format!("key {name}: alg {text} cannot sign")))?;
                if !key.family().algorithms().contains(&algorithm) {
                    return Err(bad_key(
                        path,
                        format!("key {name}: alg {text} does not fit the key type"),
                    ));
                }
                vec![algorithm]
            }
            None => key.family().algorithms().to_vec(),
        };
        keys.push(VerifyingKey {
            kid,
            algorithms,
            key,
        });
    }
    if keys.is_empty() {
        return Err(bad_key(path, "no signing key"));
    }
    Ok(keys)
}

/// The API keys of a file, by the SHA-256 digest of each key.
pub struct ApiKeys {
    entries: Vec<ApiKey>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.entries.len())
            .finish()
    }
}

struct ApiKey {
    digest: [u8; 32],
    principal: String,
    roles: Vec<String>,
}

/// One entry of the API keys file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyEntry {
    /// The key itself (convenient, but the file then holds secrets)...
    key: Option<String>,
    /// ...or the hex SHA-256 digest of the key (`printf %s KEY | sha256sum`).
    key_sha256: Option<String>,
    principal: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl ApiKeys {
    /// Parses the API keys file: a JSON array of
    /// `{"key_sha256": "<hex sha-256 of the key>", "principal": "...", "roles": [...]}`
    /// (or `"key": "<the key>"` instead of `key_sha256`; `roles` may be left out).
    /// Two entries with the same key, or an entry a caller could not present (a key
    /// shaped like a JWT, or with spaces), fail the start.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<ApiKeys, SetupError> {
        let entries: Vec<ApiKeyEntry> = serde_json::from_slice(bytes).map_err(|e| {
            bad_key(
                path,
                format!("expected [{{\"key_sha256\", \"principal\", \"roles\"}}]: {e}"),
            )
        })?;
        let mut keys: Vec<ApiKey> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let at = |reason: &str| bad_key(path, format!("entry {index}: {reason}"));
            let digest: [u8; 32] = match (&entry.key, &entry.key_sha256) {
                (Some(key), None) => {
                    if key.is_empty() || key.contains(char::is_whitespace) || looks_like_jwt(key) {
                        return Err(at(
                            "a key must be non-empty, without spaces, and not shaped like a JWT",
                        ));
                    }
                    Sha256::digest(key.as_bytes()).into()
                }
                (None, Some(hex_digest)) => hex::decode(hex_digest.trim())
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or_else(|| at("key_sha256 must be 64 hex digits"))?,
                _ => return Err(at("give exactly one of key and key_sha256")),
            };
            Caller::new(
                api_key_claims(&entry.principal, &entry.roles),
                Method::ApiKey,
            )
            .map_err(|e| at(&e.to_string()))?;
            if keys.iter().any(|k| k.digest == digest) {
                return Err(at("the same key is listed twice"));
            }
            keys.push(ApiKey {
                digest,
                principal: entry.principal,
                roles: entry.roles,
            });
        }
        if keys.is_empty() {
            return Err(bad_key(path, "no key"));
        }
        Ok(ApiKeys { entries: keys })
    }

    /// The caller a key belongs to. Every entry's digest is compared, in constant
    /// time, so the time taken does not say which entry (if any) matched.
    fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        use subtle::ConstantTimeEq;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            let equal: bool = entry.digest.ct_eq(&digest).into();
            if equal {
                found = Some(entry);
            }
        }
        let entry = found.ok_or(AuthError::UnknownApiKey)?;
        Caller::new(
            api_key_claims(&entry.principal, &entry.roles),
            Method::ApiKey,
        )
    }
}

fn api_key_claims(principal: &str, roles: &[String]) -> Map<String, Value> {
    Map::from_iter([
        ("sub".to_string(), Value::String(principal.to_string())),
        (
            "roles".to_string(),
            Value::Array(roles.iter().cloned().map(Value::String).collect()),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"an-hs256-secret-of-at-least-32-bytes!";
    const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa-public.pem");

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn files(entries: &[(&str, &[u8])]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let paths = entries
            .iter()
            .map(|(name, bytes)| {
                let path = dir.path().join(name);
                std::fs::write(&path, bytes).unwrap();
                path
            })
            .collect();
        (dir, paths)
    }

    fn hs256(claims: &Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    fn rs256(claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        )
        .unwrap()
    }

    fn hs256_auth(jwt: JwtConfig) -> (tempfile::TempDir, Authenticator) {
        let (dir, paths) = files(&[("secret", &[SECRET, b"\n"].concat())]);
        let config = AuthConfig {
            jwt: Some(JwtConfig {
                hs256_secret_file: Some(paths[0].clone()),
                ..jwt
            }),
            ..AuthConfig::default()
        };
        (dir, Authenticator::load(&config).unwrap().unwrap())
    }

    fn bearer_of(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn off_means_no_authenticator() {
        assert!(
            Authenticator::load(&AuthConfig::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_valid_hs256_token_gives_its_subject_and_claims() {
        let (_dir, auth) = hs256_auth(JwtConfig::default());
        let claims = json!({"sub": "ada", "exp": now() + 60, "roles": ["teller", 7]});
        let caller = auth
            .authenticate(Some(&bearer_of(&hs256(&claims, SECRET))))
            .unwrap();
        assert_eq!(caller.principal(), "ada");
        assert_eq!(caller.method(), Method::Jwt);
        assert_eq!(caller.roles(), ["teller"]);
        assert_eq!(Value::Object(caller.claims().clone()), claims);
        let parsed: Value = serde_json::from_str(&caller.claims_json()).unwrap();
        assert_eq!(parsed, claims);
        // The scheme is case-insensitive.
        let lower = format!("bearer {}", hs256(&claims, SECRET));
        assert!(auth.authenticate(Some(&lower)).is_ok());
    }

    #[test]
    fn bad_tokens_are_told_apart() {
        let (_dir, auth) = hs256_auth(JwtConfig {
            issuer: Some("https://issuer".into()),
            audience: Some("tessera".into()),
            ..JwtConfig::default()
        });
        let good =
            json!({"sub": "ada", "exp": now() + 60, "iss": "https://issuer", "aud": "tessera"});
        let with = |changes: Value| {
            let mut claims = good.clone();
            for (k, v) in changes.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            auth.authenticate(Some(&bearer_of(&hs256(&claims, SECRET))))
        };
        assert!(with(json!({})).is_ok());
        assert_eq!(with(json!({"exp": now() - 120})), Err(AuthError::Expired));
        // Within the leeway, a just-expired token still passes.
        assert!(with(json!({"exp": now() - 5})).is_ok());
        assert_eq!(
            with(json!({"nbf": now() + 600})),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(with(json!({"aud": "other"})), Err(AuthError::WrongAudience));
        assert_eq!(
            with(json!({"iss": "https://evil"})),
            Err(AuthError::WrongIssuer)
        );
        assert!(matches!(
            with(json!({"exp": null})),
            Err(AuthError::BadClaims(_))
        ));
        assert!(matches!(
            with(json!({"aud": null})),
            Err(AuthError::BadClaims(_))
        ));
        assert!(matches!(
            with(json!({"sub": null})),
            Err(AuthError::BadClaims(_))
        ));
        assert!(matches!(
            with(json!({"sub": 7})),
            Err(AuthError::BadClaims(_))
        ));
        assert!(matches!(
            with(json!({"sub": ""})),
            Err(AuthError::BadClaims(_))
        ));
        assert!(matches!(
            with(json!({"sub": "a\nb"})),
            Err(AuthError::BadClaims(_))
        ));
        let deep = (0..80).fold(json!(1), |inner, _| json!([inner]));
        assert!(matches!(
            with(json!({"deep": deep})),
            Err(AuthError::BadClaims(_))
        ));
        let big = "x".repeat(MAX_CLAIMS);
        assert!(matches!(
            with(json!({"big": big})),
            Err(AuthError::BadClaims(_))
        ));

        let other_secret = hs256(&good, b"another-secret-another-secret-another");
        assert_eq!(
            auth.authenticate(Some(&bearer_of(&other_secret))),
            Err(AuthError::BadSignature)
        );
        // A token whose payload was altered after signing.
        let token = hs256(&good, SECRET);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = base64_url(
            &json!({"sub": "root", "exp": now() + 60, "iss": "https://issuer", "aud": "tessera"}),
        );
        parts[1] = &forged;
        assert_eq!(
            auth.authenticate(Some(&bearer_of(&parts.join(".")))),
            Err(AuthError::BadSignature)
        );
        // The RS256 token meets no RS256 key here.
        assert!(matches!(
            auth.authenticate(Some(&bearer_of(&rs256(&good, None)))),
            Err(AuthError::UnknownKey(_))
        ));
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        for header in [
            "Basic abc",
            "Bearer",
            "Bearer  ",
            "token",
            "Bearer not-a-jwt",
        ] {
            assert!(
                matches!(
                    auth.authenticate(Some(header)),
                    Err(AuthError::Malformed(_))
                ),
                "{header}"
            );
        }
        assert!(matches!(
            auth.authenticate(Some("Bearer a.b.c")),
            Err(AuthError::Malformed(_))
        ));
    }

    fn base64_url(value: &Value) -> String {
        use base64_engine::encode;
        encode(value.to_string().as_bytes())
    }

    /// Unpadded base64url, enough to forge a token's payload in a test.
    mod base64_engine {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        pub fn encode(bytes: &[u8]) -> String {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn an_rsa_public_key_is_never_an_hmac_secret() {
        let (_dir, paths) = files(&[("public.pem", RSA_PUBLIC)]);
        let auth = Authenticator::load(&AuthConfig {
            jwt: Some(JwtConfig {
                rs256_public_key: Some(paths[0].clone()),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        })
        .unwrap()
        .unwrap();
        let claims = json!({"sub": "grace", "exp": now() + 60});
        let caller = auth
            .authenticate(Some(&bearer_of(&rs256(&claims, None))))
            .unwrap();
        assert_eq!(caller.principal(), "grace");
        // The classic confusion: the public key's bytes used as an HS256 secret.
        let confused = hs256(&claims, RSA_PUBLIC);
        assert!(matches!(
            auth.authenticate(Some(&bearer_of(&confused))),
            Err(AuthError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_jwks_key_is_picked_by_kid() {
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            Algorithm::RS256,
        )
        .unwrap();
        jwk.common.key_id = Some("k1".into());
        let jwks = json!({"keys": [jwk]}).to_string();
        let (_dir, paths) = files(&[("jwks.json", jwks.as_bytes())]);
        let auth = Authenticator::load(&AuthConfig {
            jwt: Some(JwtConfig {
                jwks: Some(paths[0].clone()),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        })
        .unwrap()
        .unwrap();
        let claims = json!({"sub": "grace", "exp": now() + 60});
        assert_eq!(
            auth.authenticate(Some(&bearer_of(&rs256(&claims, Some("k1")))))
                .unwrap()
                .principal(),
            "grace"
        );
        assert!(matches!(
            auth.authenticate(Some(&bearer_of(&rs256(&claims, Some("k2"))))),
            Err(AuthError::UnknownKey(_))
        ));
        // A malformed JWKS fails the start, with the file's name.
        let (_dir, paths) = files(&[("jwks.json", b"{\"keys\": 3}")]);
        let error = Authenticator::load(&AuthConfig {
            jwt: Some(JwtConfig {
                jwks: Some(paths[0].clone()),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("jwks.json"), "{error}");
    }

    #[test]
    fn setup_refuses_weak_or_missing_keys() {
        let (_dir, paths) = files(&[("short", b"too-short\n")]);
        let weak = AuthConfig {
            jwt: Some(JwtConfig {
                hs256_secret_file: Some(paths[0].clone()),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        };
        assert!(matches!(
            Authenticator::load(&weak),
            Err(SetupError::BadKey { .. })
        ));
        let none = AuthConfig {
            jwt: Some(JwtConfig::default()),
            ..AuthConfig::default()
        };
        assert!(matches!(
            Authenticator::load(&none),
            Err(SetupError::NoJwtKey)
        ));
        let missing = AuthConfig {
            api_keys_file: Some("/nonexistent/keys.json".into()),
            ..AuthConfig::default()
        };
        assert!(matches!(
            Authenticator::load(&missing),
            Err(SetupError::Read { .. })
        ));
    }

    fn api_keys(file: &Value) -> Result<Authenticator, SetupError> {
        let (_dir, paths) = files(&[("keys.json", file.to_string().as_bytes())]);
        Authenticator::load(&AuthConfig {
            api_keys_file: Some(paths[0].clone()),
            ..AuthConfig::default()
        })
        .map(Option::unwrap)
    }

    #[test]
    fn api_keys_by_key_or_digest() {
        let digest = hex::encode(Sha256::digest(b"secret-two"));
        let auth = api_keys(&json!([
            {"key": "secret-one", "principal": "ada", "roles": ["teller"]},
            {"key_sha256": digest, "principal": "grace"},
        ]))
        .unwrap();
        let ada = auth.authenticate(Some("Bearer secret-one")).unwrap();
        assert_eq!(ada.principal(), "ada");
        assert_eq!(ada.method(), Method::ApiKey);
        assert_eq!(ada.roles(), ["teller"]);
        assert_eq!(
            Value::Object(ada.claims().clone()),
            json!({"sub": "ada", "roles": ["teller"]})
        );
        assert_eq!(
            auth.authenticate(Some("Bearer secret-two"))
                .unwrap()
                .principal(),
            "grace"
        );
        assert_eq!(
            auth.authenticate(Some("Bearer secret-three")),
            Err(AuthError::UnknownApiKey)
        );
    }

    #[test]
    fn api_key_files_are_checked() {
        for bad in [
            json!([]),
            json!({"key": "k", "principal": "p"}),
            json!([{"principal": "p"}]),
            json!([{"key": "k", "key_sha256": "00", "principal": "p"}]),
            json!([{"key_sha256": "abc", "principal": "p"}]),
            json!([{"key": "a.b.c", "principal": "p"}]),
            json!([{"key": "with space", "principal": "p"}]),
            json!([{"key": "k", "principal": ""}]),
            json!([{"key": "k", "principal": "p", "extra": 1}]),
            json!([{"key": "k", "principal": "p"}, {"key": "k", "principal": "q"}]),
        ] {
            assert!(
                matches!(api_keys(&bad), Err(SetupError::BadKey { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn both_methods_and_a_required_role() {
        let (_dir, paths) = files(&[
            ("secret", SECRET),
            ("keys.json", br#"[{"key": "k-teller", "principal": "ada", "roles": ["teller"]}, {"key": "k-guest", "principal": "guest"}]"#),
        ]);
        let auth = Authenticator::load(&AuthConfig {
            jwt: Some(JwtConfig {
                hs256_secret_file: Some(paths[0].clone()),
                ..JwtConfig::default()
            }),
            api_keys_file: Some(paths[1].clone()),
            required_role: Some("teller".into()),
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            auth.authenticate(Some("Bearer k-teller"))
                .unwrap()
                .principal(),
            "ada"
        );
        let refused = auth.authenticate(Some("Bearer k-guest")).unwrap_err();
        assert!(refused.is_forbidden());
        assert_eq!(refused.reason(), "missing_role");
        let teller = json!({"sub": "grace", "exp": now() + 60, "roles": ["teller"]});
        assert!(
            auth.authenticate(Some(&bearer_of(&hs256(&teller, SECRET))))
                .is_ok()
        );
        let plain = json!({"sub": "grace", "exp": now() + 60});
        assert!(
            auth.authenticate(Some(&bearer_of(&hs256(&plain, SECRET))))
                .unwrap_err()
                .is_forbidden()
        );
        assert!(!AuthError::Expired.is_forbidden());
    }
}

//! [`VerifierBuilder`] and [`Issuer`]: what a [`Verifier`] accepts, checked once at build time.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use jsonwebtoken::Algorithm;
use url::Url;

use super::{
    Inner, IssuerState, Keys, Verifier,
    tenants::{DEFAULT_TENANT_CLAIM, TemplateSpec, TenantLimits, TenantPolicy, Tenants},
    token_cache::{DEFAULT_TOKEN_CACHE_ENTRIES, TokenCache},
};
use crate::{
    error::Error,
    fetch::{self, HttpOptions},
    keys::{AlgSet, KeyCache, KeyCacheOptions, KeySet, Remote, SUPPORTED},
    metrics::Metrics,
};

/// Default limit on the length of a token, checked before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// An accepted issuer, where its keys come from, and (optionally) the audiences its tokens
/// must name.
///
/// ```
/// use s2s_auth::{Issuer, Verifier};
///
/// // Each issuer's tokens must name one of *its* audiences: a token of `auth-a` for
/// // `billing-api` is refused even though `billing-api` is accepted from `auth-b`.
/// let verifier = Verifier::builder()
///     .issuer(Issuer::discover("https://auth-a.example.com").audience("orders-api"))
///     .issuer(Issuer::discover("https://auth-b.example.com").audiences(["billing-api", "ops"]))
///     .build()?;
/// # Ok::<_, s2s_auth::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Issuer {
    issuer: String,
    keys: IssuerKeys,
    audiences: Vec<String>,
    /// Set for an issuer template ([`Issuer::template`]).
    tenants: Option<TemplateSpec>,
}

#[derive(Clone, Debug)]
enum IssuerKeys {
    Discover,
    Jwks(String),
    Static(KeySet),
}

impl Issuer {
    /// An issuer whose keys are found through its metadata
    /// (`/.well-known/openid-configuration`, then `/.well-known/oauth-authorization-server`).
    /// The metadata must name exactly this issuer.
    pub fn discover(issuer: impl Into<String>) -> Self {
        Issuer {
            issuer: issuer.into(),
            keys: IssuerKeys::Discover,
            audiences: Vec::new(),
            tenants: None,
        }
    }

    /// An issuer whose keys are published at `jwks_url`.
    pub fn jwks(issuer: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Issuer {
            issuer: issuer.into(),
            keys: IssuerKeys::Jwks(jwks_url.into()),
            audiences: Vec::new(),
            tenants: None,
        }
    }

    /// An issuer with fixed keys (tests, offline use).
    pub fn keys(issuer: impl Into<String>, keys: KeySet) -> Self {
        Issuer {
            issuer: issuer.into(),
            keys: IssuerKeys::Static(keys),
            audiences: Vec::new(),
            tenants: None,
        }
    }

    /// An issuer *template*: one issuer per tenant, the tenant in place of `{tenantid}` (see
    /// [`verify::tenants`](crate::verify::tenants)). Only the tenants `policy` allows are
    /// accepted, and a token's tenant claim ([`Issuer::tenant_claim`], `tid` by default) must
    /// name the tenant its `iss` does. Keys are found by each tenant's discovery metadata
    /// unless [`Issuer::jwks_template`] says where they are.
    pub fn template(template: impl Into<String>, policy: TenantPolicy) -> Self {
        Issuer {
            issuer: template.into(),
            keys: IssuerKeys::Discover,
            audiences: Vec::new(),
            tenants: Some(TemplateSpec {
                policy,
                tenant_claim: Some(DEFAULT_TENANT_CLAIM.to_owned()),
                jwks: None,
            }),
        }
    }

    /// For an [`Issuer::template`]: each tenant's JWK set URL, `{tenantid}` in it once.
    /// Ignored by other issuers.
    pub fn jwks_template(mut self, url: impl Into<String>) -> Self {
        if let Some(spec) = &mut self.tenants {
            spec.jwks = Some(url.into());
        }
        self
    }

    /// For an [`Issuer::template`]: the claim that must name the tenant of `iss` (default
    /// `tid`); `None` when `iss` alone names it (an Auth0 or Okta domain per tenant). Ignored
    /// by other issuers.
    pub fn tenant_claim(mut self, claim: Option<&str>) -> Self {
        if let Some(spec) = &mut self.tenants {
            spec.tenant_claim = claim.map(str::to_owned);
        }
        self
    }

    /// Accepts this issuer's tokens only when their `aud` names `audience` (call again, or use
    /// [`Issuer::audiences`], to accept any of several). An issuer with audiences of its own
    /// ignores those of [`VerifierBuilder::audience`].
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// [`Issuer::audience`] for each of `audiences`.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// The issuer identifier tokens must carry in `iss`.
    pub fn id(&self) -> &str {
        &self.issuer
    }
}

/// Builds a [`Verifier`].
#[must_use]
pub struct VerifierBuilder {
    issuers: Vec<Issuer>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    require_at_jwt: bool,
    required_claims: Vec<String>,
    max_token_bytes: usize,
    key_cache: KeyCacheOptions,
    clock: Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>,
    token_cache_entries: u64,
    pub(super) tenant_limits: TenantLimits,
}

crate::debug_fields!(VerifierBuilder: issuers, audiences);

impl VerifierBuilder {
    /// Accepts tokens of `issuer` (call again for several issuers, each with its own keys).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Accepts tokens whose `aud` names `audience` (call again to accept any of several), for
    /// every issuer without audiences of its own ([`Issuer::audience`]). Every issuer needs at
    /// least one audience, its own or these: a token meant for another service must not be
    /// accepted here.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The algorithms accepted (default: all of [`SUPPORTED_ALGORITHMS`](crate::keys::SUPPORTED_ALGORITHMS)). Each key further
    /// limits them to those of its type.
    pub fn algorithms(mut self, algorithms: &[crate::Algorithm]) -> Self {
        self.algorithms = algorithms.iter().map(|a| a.to_jwt()).collect();
        self
    }

    crate::refresh::setters! {
        /// Clock-skew allowance for `exp` and `nbf` (default [`DEFAULT_LEEWAY`]).
        leeway: Duration;
        /// Strict RFC 9068 mode: requires the header `typ: at+jwt` (or `application/at+jwt`, in
        /// any case), refusing also tokens without `typ` or with `typ: JWT`.
        ///
        /// Without it, a token whose `typ` names another kind of JWT (an ID token, a security
        /// event, a DPoP proof, a logout token, ...) is refused all the same: only no `typ`,
        /// `JWT` (or `application/jwt`) and `at+jwt` are accepted, so that another JWT of the
        /// same issuer is never taken for an access token.
        require_at_jwt: bool;
        /// Limit on the token length, checked before any parsing (default
        /// [`DEFAULT_MAX_TOKEN_BYTES`]).
        max_token_bytes: usize;
        /// How remote key sets are fetched and cached.
        key_cache: KeyCacheOptions;
    }

    /// Requires `claim` to be present (`exp` always is).
    pub fn required_claim(mut self, claim: impl Into<String>) -> Self {
        self.required_claims.push(claim.into());
        self
    }

    /// How long past its time to live a remote key set is still used while every refresh fails
    /// (default [`DEFAULT_MAX_STALE`](crate::keys::DEFAULT_MAX_STALE), 24 h): known keys keep
    /// verifying through a key-server outage, but not forever. Past it the issuer is not ready
    /// ([`Verifier::is_ready`] is false) and its tokens are answered 503 with `Retry-After`
    /// until a fetch succeeds. Shortcut for [`KeyCacheOptions::max_stale`].
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.key_cache.max_stale = max_stale;
        self
    }

    /// Shortcut for the HTTP options of [`VerifierBuilder::key_cache`].
    pub fn http(mut self, http: HttpOptions) -> Self {
        self.key_cache.http = http;
        self
    }

    /// Bound of the validated-token cache (default [`DEFAULT_TOKEN_CACHE_ENTRIES`]; 0 turns it
    /// off). A token verified twice is kept; from then on it costs a lookup instead of a
    /// signature check. `exp` and `nbf` are still checked on every hit, and entries go when
    /// their token expires or their key leaves the key set.
    pub fn token_cache(mut self, max_entries: u64) -> Self {
        self.token_cache_entries = max_entries;
        self
    }

    /// The clock `exp` and `nbf` are checked against (default: the system clock).
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the configuration and builds the verifier. Fails on a missing issuer or audience,
    /// an unsupported algorithm, or a key URL that breaks the https policy.
    pub fn build(self) -> Result<Verifier, Error> {
        if self.issuers.is_empty() {
            return Err(Error::config(
                "no issuer configured: add one with `.issuer(Issuer::discover(url))`",
            ));
        }
        let algorithms = AlgSet::from_slice(&self.algorithms);
        if algorithms.is_empty() {
            return Err(Error::config("no algorithm allowed"));
        }
        let metrics = Arc::new(Metrics::new());
        let allow_insecure = self.key_cache.http.allow_insecure_http;
        let mut issuers = Vec::with_capacity(self.issuers.len());
        let mut templates = Vec::new();
        for issuer in self.issuers {
            if issuers
                .iter()
                .any(|i: &IssuerState| i.issuer == issuer.issuer)
            {
                return Err(Error::config(format!(
                    "issuer `{}` is configured twice",
                    issuer.issuer
                )));
            }
            let audiences = if issuer.audiences.is_empty() {
                self.audiences.clone()
            } else {
                issuer.audiences
            };
            if audiences.is_empty() {
                return Err(Error::config(format!(
                    "no audience configured for issuer `{}`: add this service's identifier with \
                     `.audience(...)` (on the builder, or on the `Issuer` for its tokens only) so \
                     that tokens meant for other services are refused",
                    issuer.issuer
                )));
            }
            if let Some(spec) = issuer.tenants {
                templates.push((issuer.issuer, spec, audiences));
                continue;
            }
            let keys = match issuer.keys {
                IssuerKeys::Static(set) => Keys::Static(set),
                IssuerKeys::Discover => {
                    fetch::parse_endpoint(&issuer.issuer, allow_insecure)?;
                    Keys::Remote(KeyCache::new(
                        Remote::Discovery {
                            issuer: issuer.issuer.clone(),
                        },
                        self.key_cache.clone(),
                        metrics.clone(),
                    )?)
                }
                IssuerKeys::Jwks(url) => {
                    let url: Url = fetch::parse_endpoint(&url, allow_insecure)?;
                    Keys::Remote(KeyCache::new(
                        Remote::Jwks(url),
                        self.key_cache.clone(),
                        metrics.clone(),
                    )?)
                }
            };
            issuers.push(IssuerState {
                issuer: issuer.issuer,
                audiences,
                keys,
            });
        }
        let tenants = Tenants::new(
            templates,
            issuers.len(),
            &self.tenant_limits,
            &self.key_cache,
            &metrics,
        )?;
        let required_claims = self
            .required_claims
            .into_iter()
            .filter(|c| c != "exp")
            .collect();
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuers,
                algorithms,
                leeway: self.leeway.as_secs(),
                require_at_jwt: self.require_at_jwt,
                required_claims,
                max_token_bytes: self.max_token_bytes,
                clock: self.clock,
                metrics,
                token_cache: TokenCache::new(self.token_cache_entries),
                tenants,
            }),
        })
    }
}

impl Verifier {
    /// Starts building a verifier.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: SUPPORTED.to_vec(),
            leeway: DEFAULT_LEEWAY,
            require_at_jwt: false,
            required_claims: Vec::new(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            key_cache: KeyCacheOptions::default(),
            clock: None,
            token_cache_entries: DEFAULT_TOKEN_CACHE_ENTRIES,
            tenant_limits: TenantLimits::default(),
        }
    }
}

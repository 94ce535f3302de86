//! Multi-tenant issuers (Entra ID style): one issuer *template* such as
//! `https://login.microsoftonline.com/{tenantid}/v2.0` stands for one issuer per tenant.
//!
//! ```
//! use s2s_auth::{Issuer, Verifier, verify::TenantPolicy};
//!
//! let verifier = Verifier::builder()
//!     .issuer(
//!         Issuer::template(
//!             "https://login.microsoftonline.com/{tenantid}/v2.0",
//!             TenantPolicy::allow(["9188040d-6c67-4c5b-b112-36a304b66dad"]),
//!         )
//!         // Entra ID's per-tenant key set (without it: per-tenant discovery).
//!         .jwks_template("https://login.microsoftonline.com/{tenantid}/discovery/v2.0/keys")
//!         .audience("api://orders"),
//!     )
//!     .max_tenants(100)
//!     .build()?;
//! # let _ = verifier;
//! # Ok::<_, s2s_auth::Error>(())
//! ```
//!
//! A token is taken for a tenant only when all of this holds, checked in this order and before
//! any network call: its `iss` matches the template with a well-formed tenant in the
//! placeholder (letters, digits, `-`, `_`, inner dots; at most 64 characters); the
//! [`TenantPolicy`] allows that tenant; and its tenant claim (`tid` by default, see
//! [`Issuer::tenant_claim`](crate::Issuer::tenant_claim)) names the same tenant. So a storm of tokens naming unknown or
//! random tenants is refused at the cost of parsing them: no fetch, no key cache, no memory.
//!
//! Each allowed tenant gets its own key cache (the same `KeyCache` a fixed issuer has, with its
//! TTL, unknown-kid cooldown and staleness bound), created on its first token. They are kept
//! in a bounded LRU map ([`VerifierBuilder::max_tenants`]): past the bound the least recently
//! used tenant's keys are dropped (its background refresh ends) and fetched again when it
//! returns. Recency counts full verifications (a tenant's first tokens and cache misses): a
//! tenant served only from the validated-token cache can be evicted by busier tenants, at the
//! cost of one refetch. Tenants never make the verifier not ready: only fixed issuers do.
//! An allow-list must fit: the build fails when `max_tenants` is smaller than the tenants the
//! lists allow, so listed tenants are never evicted; only a [`TenantPolicy::predicate`] can
//! allow more tenants than are held.
//!
//! Tokens of an allowed tenant cost fetches before their signature can be checked, so forged
//! ones could make the verifier fetch. Three bounds hold whatever they say:
//!
//! - a tenant's unknown-kid cooldown and failure back-off (see
//!   [`KeyCacheOptions`]) are kept apart from its key cache, so
//!   that evicting and recreating the cache does not reset them: for every allowed tenant of
//!   an allow-list, and for a predicate's the `max_tenants + burst` most recently started;
//! - every fetch of a tenant's keys but the background refresh (first keys, unknown kid,
//!   keys past their staleness) is charged to one token bucket shared by all tenants
//!   ([`VerifierBuilder::tenant_fetch_limit`], default [`DEFAULT_TENANT_FETCH_BURST`] at once
//!   then one per [`DEFAULT_TENANT_FETCH_INTERVAL`]); while it is empty such tokens are
//!   refused with [`Reason::KeysUnavailable`] (503 with `Retry-After`) without fetching, and
//!   no new tenant key cache is created (so none is evicted);
//! - tenants already held keep verifying with their keys meanwhile.
//!
//! So forged tokens cycling over allowed tenants cause at most `burst` fetches at once and
//! one per `interval` after that (each a JWK set request, plus a discovery request for
//! tenants without a JWKS URL template).

use std::{
    collections::HashSet,
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use super::{Inner, Keys, Pending, Verifier, VerifierBuilder, reject};
use crate::{
    error::Error,
    fetch,
    keys::{BackoffState, FetchBudget, KeyCache, KeyCacheOptions, Remote, budget_exhausted},
    metrics::Metrics,
    rejection::{Reason, Rejection, sanitize},
};

/// The placeholder of an issuer template (Entra ID's own notation).
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Default of [`VerifierBuilder::max_tenants`].
pub const DEFAULT_MAX_TENANTS: u64 = 1000;

/// Default burst of [`VerifierBuilder::tenant_fetch_limit`]: tenant key fetches allowed at once.
pub const DEFAULT_TENANT_FETCH_BURST: u32 = 100;

/// Default interval of [`VerifierBuilder::tenant_fetch_limit`]: past the burst, one tenant key
/// fetch per this interval (10 a second).
pub const DEFAULT_TENANT_FETCH_INTERVAL: Duration = Duration::from_millis(100);

/// Default of [`Issuer::tenant_claim`](crate::Issuer::tenant_claim): Entra ID's tenant claim.
pub const DEFAULT_TENANT_CLAIM: &str = "tid";

/// The longest tenant accepted in the placeholder (an Entra ID tenant is a 36-character GUID).
const MAX_TENANT_LEN: usize = 64;

/// Which tenants of an issuer template are accepted: an explicit list, or a predicate.
#[derive(Clone)]
pub struct TenantPolicy(Policy);

#[derive(Clone)]
enum Policy {
    Allow(Arc<HashSet<String>>),
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl TenantPolicy {
    /// Exactly these tenants (compared byte for byte, as they appear in `iss`).
    pub fn allow<I, S>(tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TenantPolicy(Policy::Allow(Arc::new(
            tenants.into_iter().map(Into::into).collect(),
        )))
    }

    /// The tenants for which `allows` returns true. It sees only well-formed tenants, and is
    /// asked before any fetch: it is the user's bound on which tenants may cost a key fetch,
    /// so it should not accept everything.
    pub fn predicate(allows: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        TenantPolicy(Policy::Predicate(Arc::new(allows)))
    }

    fn allows(&self, tenant: &str) -> bool {
        match &self.0 {
            Policy::Allow(set) => set.contains(tenant),
            Policy::Predicate(allows) => allows(tenant),
        }
    }

    /// How many tenants it allows; `None` for a predicate.
    fn len(&self) -> Option<usize> {
        match &self.0 {
            Policy::Allow(set) => Some(set.len()),
            Policy::Predicate(_) => None,
        }
    }
}

impl fmt::Debug for TenantPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Policy::Allow(set) => {
                let mut tenants: Vec<_> = set.iter().collect();
                tenants.sort();
                f.debug_tuple("Allow").field(&tenants).finish()
            }
            Policy::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// The tenant part of an [`Issuer::template`](crate::Issuer::template): built by `Issuer`'s
/// methods, checked at build time.
#[derive(Clone, Debug)]
pub(super) struct TemplateSpec {
    pub(super) policy: TenantPolicy,
    pub(super) tenant_claim: Option<String>,
    /// A JWKS URL template; without it, per-tenant discovery.
    pub(super) jwks: Option<String>,
}

/// A string with one `{tenantid}`, split around it.
#[derive(Debug)]
struct Pattern {
    prefix: String,
    suffix: String,
}

impl Pattern {
    fn parse(template: &str, what: &str) -> Result<Pattern, Error> {
        let mut parts = template.split(TENANT_PLACEHOLDER);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(prefix), Some(suffix), None) => Ok(Pattern {
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
            }),
            _ => Err(Error::config(format!(
                "{what} `{template}` must hold `{TENANT_PLACEHOLDER}` exactly once"
            ))),
        }
    }

    /// The tenant in `value`, when `value` is this pattern with a well-formed tenant.
    fn tenant_of<'a>(&self, value: &'a str) -> Option<&'a str> {
        let tenant = value
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        well_formed(tenant).then_some(tenant)
    }

    fn with(&self, tenant: &str) -> String {
        format!("{}{tenant}{}", self.prefix, self.suffix)
    }
}

/// A tenant fit for a URL: letters, digits, `-`, `_`, and dots between them (no `..`, so a
/// tenant in a path can never climb out of it).
fn well_formed(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= MAX_TENANT_LEN
        && !tenant.starts_with('.')
        && !tenant.ends_with('.')
        && !tenant.contains("..")
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A checked issuer template.
struct Template {
    issuer: Pattern,
    /// As configured, for messages.
    source: String,
    policy: TenantPolicy,
    tenant_claim: Option<String>,
    jwks: Option<Pattern>,
    audiences: Vec<String>,
}

/// The key cache of one tenant.
pub(super) struct TenantKeys {
    /// Its issuer index, past those of the fixed issuers: what the pipeline (pending fetches,
    /// the validated-token cache) refers to it by.
    pub(super) id: usize,
    pub(super) issuer: Box<str>,
    pub(super) keys: Keys,
    template: usize,
}

/// Every template of a verifier and the key caches of their tenants.
pub(super) struct Tenants {
    templates: Vec<Template>,
    /// The owner of the tenants' key caches: bounded, least recently used evicted first.
    by_issuer: moka::sync::Cache<Box<str>, Arc<TenantKeys>>,
    /// The same caches by id, for the fetch and staleness checks that know only the id; an
    /// entry leaves when its tenant is evicted.
    by_id: moka::sync::Cache<usize, Weak<TenantKeys>>,
    next_id: AtomicUsize,
    /// Every started tenant's back-off state by issuer, apart from (and outliving) its key
    /// cache; bounded (see [`Tenants::new`]).
    backoff: moka::sync::Cache<Box<str>, Arc<BackoffState>>,
    /// The token bucket of the tenants' fetches.
    budget: Arc<FetchBudget>,
    key_cache: KeyCacheOptions,
    /// One client for every tenant's fetches (building one per tenant costs milliseconds).
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Tenants {
    /// The templates among the builder's issuers (`(template, spec, audiences)`), checked;
    /// `None` without any. `first_id` is the number of fixed issuers.
    pub(super) fn new(
        templates: Vec<(String, TemplateSpec, Vec<String>)>,
        first_id: usize,
        limits: &TenantLimits,
        key_cache: &KeyCacheOptions,
        metrics: &Arc<Metrics>,
    ) -> Result<Option<Tenants>, Error> {
        if templates.is_empty() {
            return Ok(None);
        }
        let max_tenants = limits.max_tenants;
        if max_tenants == 0 {
            return Err(Error::config(
                "max_tenants is 0: no tenant key cache could be kept, so every token of an issuer \
                 template would fetch keys; set it to at least the number of tenants allowed",
            ));
        }
        if limits.fetch_burst == 0 || limits.fetch_interval.is_zero() {
            return Err(Error::config(format!(
                "the tenant fetch limit ({} at once, then one per {:?}) must have a burst above \
                 0 (or no tenant could ever be fetched) and an interval above 0 (or it would not \
                 bound anything)",
                limits.fetch_burst, limits.fetch_interval
            )));
        }
        let allow_insecure = key_cache.http.allow_insecure_http;
        let mut checked = Vec::with_capacity(templates.len());
        for (source, spec, audiences) in templates {
            let issuer = Pattern::parse(&source, "issuer template")?;
            // Every tenant's URL must pass the https policy; a sample tenant shows it.
            fetch::parse_endpoint(&issuer.with("tenant"), allow_insecure)?;
            let jwks = spec
                .jwks
                .as_deref()
                .map(|url| {
                    let pattern = Pattern::parse(url, "JWKS URL template")?;
                    fetch::parse_endpoint(&pattern.with("tenant"), allow_insecure)?;
                    Ok::<_, Error>(pattern)
                })
                .transpose()?;
            if spec.policy.len() == Some(0) {
                return Err(Error::config(format!(
                    "issuer template `{source}` allows no tenant: list the tenants accepted in \
                     `TenantPolicy::allow`"
                )));
            }
            if checked.iter().any(|t: &Template| t.source == source) {
                return Err(Error::config(format!(
                    "issuer template `{source}` is configured twice"
                )));
            }
            checked.push(Template {
                issuer,
                source,
                policy: spec.policy,
                tenant_claim: spec.tenant_claim,
                jwks,
                audiences,
            });
        }
        // Listed tenants are never evicted: they must all fit.
        let listed: u64 = checked
            .iter()
            .filter_map(|t| t.policy.len())
            .map(|n| n as u64)
            .sum();
        if listed > max_tenants {
            return Err(Error::config(format!(
                "the issuer templates allow {listed} tenants but max_tenants is {max_tenants}: \
                 raise max_tenants to at least {listed}, or allow fewer tenants"
            )));
        }
        // Room for every listed tenant; with a predicate also for as many as may have fetched
        // (started) lately besides the held ones, which the fetch limit bounds.
        let predicates = checked.iter().any(|t| t.policy.len().is_none());
        let backoff_capacity = if predicates {
            max_tenants
                .saturating_add(listed)
                .saturating_add(u64::from(limits.fetch_burst))
        } else {
            listed
        };
        let backoff = moka::sync::Cache::builder()
            .max_capacity(backoff_capacity)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        let by_id = moka::sync::Cache::builder().build();
        let on_evict = by_id.clone();
        let counted = metrics.clone();
        let by_issuer = moka::sync::Cache::builder()
            .max_capacity(max_tenants)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .eviction_listener(move |_, keys: Arc<TenantKeys>, _| {
                on_evict.invalidate(&keys.id);
                counted.tenant_key_caches(-1.0);
            })
            .build();
        Ok(Some(Tenants {
            templates: checked,
            by_issuer,
            by_id,
            next_id: AtomicUsize::new(first_id),
            backoff,
            budget: Arc::new(FetchBudget::new(limits.fetch_burst, limits.fetch_interval)),
            key_cache: key_cache.clone(),
            client: key_cache.http.client()?,
            metrics: metrics.clone(),
        }))
    }

    /// The templates, for `Debug`.
    pub(super) fn sources(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.templates
            .iter()
            .map(|t| (t.source.as_str(), t.audiences.as_slice()))
    }

    /// Tenant key caches held now.
    pub(super) fn held(&self) -> u64 {
        self.by_issuer.run_pending_tasks();
        self.by_issuer.entry_count()
    }

    pub(super) fn audiences(&self, keys: &TenantKeys) -> &[String] {
        &self.templates[keys.template].audiences
    }

    /// The tenant's keys by id, while it is held.
    pub(super) fn by_id(&self, id: usize) -> Option<Arc<TenantKeys>> {
        self.by_id.get(&id)?.upgrade()
    }

    /// The key cache for a token of issuer `iss` (none of the fixed issuers) whose claims are
    /// `payload`: refused unless a template matches, its policy allows the tenant and the
    /// tenant claim agrees. Only then is a key cache created (without fetching yet).
    fn resolve(&self, iss: &str, payload: &[u8]) -> Result<Arc<TenantKeys>, Pending> {
        let Some((index, template, tenant)) = self
            .templates
            .iter()
            .enumerate()
            .find_map(|(i, t)| Some((i, t, t.issuer.tenant_of(iss)?)))
        else {
            return Err(reject(
                Reason::UnknownIssuer,
                format!("issuer `{}` is not accepted", sanitize(iss, 100)),
            ));
        };
        if !template.policy.allows(tenant) {
            return Err(reject(
                Reason::UnknownIssuer,
                format!(
                    "tenant `{tenant}` of issuer template `{}` is not accepted",
                    template.source
                ),
            ));
        }
        if let Some(claim) = &template.tenant_claim {
            match tenant_claim(payload, claim) {
                Some(named) if named == tenant => {}
                Some(named) => {
                    return Err(reject(
                        Reason::UnknownIssuer,
                        format!(
                            "the `{claim}` claim names tenant `{}`, but `iss` names tenant \
                             `{tenant}`",
                            sanitize(&named, MAX_TENANT_LEN)
                        ),
                    ));
                }
                None => {
                    return Err(reject(
                        Reason::UnknownIssuer,
                        format!(
                            "the token has no `{claim}` claim (a string) naming its tenant \
                             `{tenant}`"
                        ),
                    ));
                }
            }
        }
        if let Some(held) = self.by_issuer.get(iss) {
            return Ok(held);
        }
        // A new cache could not fetch now: do not create it (and evict another tenant's).
        if let Err(wait) = self.budget.check(false) {
            let e = budget_exhausted(wait);
            return Err(Pending::Rejected(
                Rejection::summarized(
                    Reason::KeysUnavailable,
                    format!("the signing keys of tenant `{tenant}` are not available: {e}"),
                )
                .with_retry_after(e.retry_after().unwrap_or(wait)),
            ));
        }
        // One cache per tenant even when its first tokens arrive together.
        self.by_issuer
            .try_get_with(iss.into(), || {
                let remote = match &template.jwks {
                    Some(pattern) => Remote::Jwks(fetch::parse_endpoint(
                        &pattern.with(tenant),
                        self.key_cache.http.allow_insecure_http,
                    )?),
                    None => Remote::Discovery { issuer: iss.into() },
                };
                let backoff = self
                    .backoff
                    .get_with(iss.into(), || Arc::new(BackoffState::new()));
                let cache = KeyCache::with_client(
                    remote,
                    self.key_cache.clone(),
                    self.client.clone(),
                    self.metrics.clone(),
                    backoff,
                    Some(self.budget.clone()),
                );
                let keys = Arc::new(TenantKeys {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    issuer: iss.into(),
                    keys: Keys::Remote(cache),
                    template: index,
                });
                self.by_id.insert(keys.id, Arc::downgrade(&keys));
                self.metrics.tenant_key_caches(1.0);
                Ok::<_, Error>(keys)
            })
            .map_err(|e| {
                reject(
                    Reason::UnknownIssuer,
                    format!("no key set for tenant `{tenant}`: {e}"),
                )
            })
    }
}

/// The tenant claim of a payload, when it is a string (cold path: the payload is read again).
fn tenant_claim(payload: &[u8], claim: &str) -> Option<String> {
    let mut claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).ok()?;
    match claims.remove(claim)? {
        serde_json::Value::String(tenant) => Some(tenant),
        _ => None,
    }
}

impl Verifier {
    /// The key cache of the tenant `iss` names (cold path: `iss` is none of the fixed issuers).
    pub(super) fn tenant_keys(
        &self,
        iss: &str,
        payload: &[u8],
    ) -> Result<Arc<TenantKeys>, Pending> {
        match &self.inner.tenants {
            Some(tenants) => tenants.resolve(iss, payload),
            None => Err(reject(
                Reason::UnknownIssuer,
                format!("issuer `{}` is not accepted", sanitize(iss, 100)),
            )),
        }
    }

    /// Tenant key caches held now (see [`VerifierBuilder::max_tenants`]); 0 without issuer
    /// templates.
    pub fn tenants_held(&self) -> u64 {
        self.inner.tenants.as_ref().map_or(0, Tenants::held)
    }
}

impl Inner {
    /// The tenant with issuer index `id` (past the fixed issuers), while it is held.
    pub(super) fn tenant(&self, id: usize) -> Option<Arc<TenantKeys>> {
        self.tenants.as_ref()?.by_id(id)
    }
}

/// The builder's bounds on tenants.
#[derive(Clone, Debug)]
pub(super) struct TenantLimits {
    pub(super) max_tenants: u64,
    pub(super) fetch_burst: u32,
    pub(super) fetch_interval: Duration,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            max_tenants: DEFAULT_MAX_TENANTS,
            fetch_burst: DEFAULT_TENANT_FETCH_BURST,
            fetch_interval: DEFAULT_TENANT_FETCH_INTERVAL,
        }
    }
}

impl VerifierBuilder {
    /// How many tenants' key caches are kept at most (default [`DEFAULT_MAX_TENANTS`]): past
    /// it the least recently used tenant's keys are dropped and fetched again on its next
    /// token. The build fails when it is 0 or smaller than the number of tenants the
    /// templates' allow-lists name.
    pub fn max_tenants(mut self, max_tenants: u64) -> Self {
        self.tenant_limits.max_tenants = max_tenants;
        self
    }

    /// The bound on tenant key fetches, shared by every tenant of every template: `burst` at
    /// once, then one more per `interval` (default [`DEFAULT_TENANT_FETCH_BURST`] and
    /// [`DEFAULT_TENANT_FETCH_INTERVAL`]: 10 a second). Charged are a tenant's first fetch
    /// and the fetches its tokens ask for (unknown kid, keys past their staleness), not the
    /// background refresh of held keys. While none is left, tokens that need a fetch are
    /// refused with [`Reason::KeysUnavailable`] (503, `Retry-After`) and no tenant key cache
    /// is created. Both must be above 0.
    pub fn tenant_fetch_limit(mut self, burst: u32, interval: Duration) -> Self {
        self.tenant_limits.fetch_burst = burst;
        self.tenant_limits.fetch_interval = interval;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_matches_only_well_formed_tenants() {
        let p = Pattern::parse("https://login.example.com/{tenantid}/v2.0", "t").unwrap();
        assert_eq!(
            p.tenant_of("https://login.example.com/abc-123/v2.0"),
            Some("abc-123")
        );
        for bad in [
            "https://login.example.com//v2.0",
            "https://login.example.com/a/b/v2.0",
            "https://login.example.com/../v2.0",
            "https://login.example.com/a..b/v2.0",
            "https://login.example.com/a%2fb/v2.0",
            "https://login.example.com/abc/v2.0/",
            "https://login.example.com/abc/v2",
        ] {
            assert_eq!(p.tenant_of(bad), None, "{bad}");
        }
        let long = format!("https://login.example.com/{}/v2.0", "a".repeat(65));
        assert_eq!(p.tenant_of(&long), None);
        assert!(Pattern::parse("https://x/{tenantid}/{tenantid}", "t").is_err());
        assert!(Pattern::parse("https://x/", "t").is_err());
    }

    #[test]
    fn the_tenant_claim_is_read_only_when_a_string() {
        assert_eq!(
            tenant_claim(br#"{"tid":"abc","x":[1,2]}"#, "tid").as_deref(),
            Some("abc")
        );
        assert_eq!(tenant_claim(br#"{"tid":7}"#, "tid"), None);
        assert_eq!(tenant_claim(br#"{"sub":"abc"}"#, "tid"), None);
    }
}

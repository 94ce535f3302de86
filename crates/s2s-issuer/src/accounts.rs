//! Service accounts: the clients of the client credentials grant.
//!
//! ```
//! # async fn demo() -> Result<(), s2s_issuer::Error> {
//! use s2s_issuer::{Issuer, IssuerConfig, accounts::{AccountUpdate, NewAccount, Status}};
//! use secrecy::ExposeSecret as _;
//!
//! let mut config = IssuerConfig::new("http://127.0.0.1:8080");
//! config.db = ":memory:".into();
//! let issuer = Issuer::open(config).await?;
//!
//! let created = issuer
//!     .accounts()
//!     .create(NewAccount::new("billing").scope("orders:read").allowed_ip("10.0.0.0/8"))
//!     .await?;
//! println!("client id {}", created.account.client_id);
//! let _shown_once = created.client_secret.expose_secret();
//!
//! issuer
//!     .accounts()
//!     .update(&created.account.client_id, AccountUpdate { status: Some(Status::Disabled), ..Default::default() })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Secrets are shown once (in [`CreatedAccount`] and [`RotatedSecret`]) and stored only as
//! argon2id hashes. Every change is written to the database before the call returns.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::{
    Clock, Error, audit, dates,
    secret::{SecretHasher, generate_client_id, generate_secret},
    store::{
        AccountChanges, AccountRef, AccountRow, NewAccountRow, SERVICE_ACCOUNT_ID_PREFIX, Store,
    },
};

/// The longest grace period of a secret rotation: 7 days.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(7 * 86_400);

/// The page size of the admin API's list when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;
/// The largest page of [`Accounts::list`].
pub const MAX_PAGE: u32 = 500;

/// An account's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// May get tokens.
    Active,
    /// Refused (401 `unauthorized_client`, AUTH_103) until enabled again.
    Disabled,
}

impl Status {
    /// `"ACTIVE"` or `"DISABLED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Disabled => "DISABLED",
        }
    }
}

/// A service account as stored (without its secret). In JSON its fields are the seed's
/// (`serviceAccountId`, `name`, `status`, `clientId`, `scopes`, `createdAt`, `expiresAt`, …),
/// every time an RFC 3339 date in UTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The account's id in the admin API: `svc_` and 16 hex digits.
    pub service_account_id: String,
    /// A unique, human-readable name.
    pub name: String,
    /// Active or disabled.
    pub status: Status,
    /// The client id (32 hex characters): `sub` and `client_id` of its tokens.
    pub client_id: String,
    /// Free text.
    pub description: String,
    /// The scopes it may be granted.
    pub scopes: Vec<String>,
    /// The networks it may ask from; empty means any address.
    #[serde(serialize_with = "serialize_nets")]
    pub allowed_ips: Vec<IpNet>,
    /// Audiences it may request (`audience` / `resource`) besides the default one.
    pub audiences: Vec<String>,
    /// Creation time, Unix seconds.
    #[serde(serialize_with = "dates::serialize")]
    pub created_at: u64,
    /// Last change, Unix seconds.
    #[serde(serialize_with = "dates::serialize")]
    pub updated_at: u64,
    /// When the account stops getting tokens (401 `unauthorized_client`, AUTH_103), Unix
    /// seconds; `None` (JSON `null`): never.
    #[serde(serialize_with = "dates::serialize_opt")]
    pub expires_at: Option<u64>,
    /// Last secret rotation, Unix seconds.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "dates::serialize_opt"
    )]
    pub secret_rotated_at: Option<u64>,
    /// Until when the secret before the last rotation is still accepted, Unix seconds.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "dates::serialize_opt"
    )]
    pub previous_secret_expires_at: Option<u64>,
}

impl Account {
    /// Whether `ip` may ask for tokens: the list is empty, or a network in it contains `ip`.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        if self.allowed_ips.is_empty() {
            return true;
        }
        let ip = canonical_ip(ip);
        self.allowed_ips.iter().any(|net| net.contains(&ip))
    }

    /// Whether the account is past its `expires_at` at `now` (Unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn serialize_nets<S: serde::Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(ToString::to_string))
}

/// A new account: what the admin API's `POST /admin/service-accounts` takes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAccount {
    /// A unique name (1 to 100 characters).
    pub name: String,
    /// Free text (up to 1000 characters).
    #[serde(default)]
    pub description: String,
    /// Scopes (RFC 6749 §3.3 scope tokens).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses; empty allows any address.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Audiences the account may request besides the default one.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// When the account stops getting tokens, Unix seconds (JSON: RFC 3339 or `null`); must
    /// be in the future.
    #[serde(default, deserialize_with = "dates::deserialize_opt")]
    pub expires_at: Option<u64>,
}

impl NewAccount {
    /// An account named `name`, with no scopes and no restrictions.
    pub fn new(name: impl Into<String>) -> Self {
        NewAccount {
            name: name.into(),
            ..NewAccount::default()
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds an allowed network (CIDR or address).
    pub fn allowed_ip(mut self, cidr: impl Into<String>) -> Self {
        self.allowed_ips.push(cidr.into());
        self
    }

    /// Adds an audience the account may request.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Sets when the account stops getting tokens (Unix seconds).
    pub fn expires_at(mut self, unix_secs: u64) -> Self {
        self.expires_at = Some(unix_secs);
        self
    }
}

/// A change to an account: what `PATCH /admin/service-accounts/{serviceAccountId}` takes.
/// `None` keeps a field.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountUpdate {
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// The new scopes (replacing the old ones).
    pub scopes: Option<Vec<String>>,
    /// The new networks (replacing the old ones).
    pub allowed_ips: Option<Vec<String>>,
    /// The new requestable audiences.
    pub audiences: Option<Vec<String>>,
    /// Enable or disable.
    pub status: Option<Status>,
    /// A new expiry, Unix seconds (in the future), or `Some(None)` (JSON `null`) for none.
    #[serde(default, deserialize_with = "dates::deserialize_patch")]
    pub expires_at: Option<Option<u64>>,
}

/// A created account and its secret, shown this once.
#[derive(Debug)]
pub struct CreatedAccount {
    /// The account.
    pub account: Account,
    /// The client secret (43 characters, 256 random bits). Not stored anywhere.
    pub client_secret: SecretString,
}

/// A new secret, shown this once.
#[derive(Debug)]
pub struct RotatedSecret {
    /// The account after the rotation.
    pub account: Account,
    /// The new client secret.
    pub client_secret: SecretString,
}

/// One page of [`Accounts::list`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountPage {
    /// The accounts, in creation order.
    pub accounts: Vec<Account>,
    /// Pass this as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The account store: create, list, get, update, rotate secrets, delete.
/// Get one from [`Issuer::accounts`](crate::Issuer::accounts).
#[derive(Clone, Debug)]
pub struct Accounts {
    pub(crate) store: Store,
    pub(crate) hasher: Arc<SecretHasher>,
    pub(crate) clock: Clock,
    /// Bumped by every change that can alter the published scopes (the metadata cache's key).
    pub(crate) generation: Arc<AtomicU64>,
    /// Every account by client id, as last read: what the token endpoint serves from while
    /// the database is unreachable, and what answers ids it does not hold (see
    /// [`Accounts::credentials`]). Kept in step by this issuer's own changes and by
    /// [`crate::sync`]'s reload after another replica's change.
    pub(crate) known: Arc<Known>,
    pub(crate) health: Arc<crate::sync::Health>,
}

/// The in-memory copy of the accounts (with their secret hashes: `Debug` shows the count).
///
/// Only this issuer's own admin writes ([`Accounts::remember`]) and the poll's reload
/// ([`Known::replace_all`]) change it, never a token request's read: a read that started before
/// a disable and ends after it cannot put the old row back. A reload that read its rows before
/// an admin write here ended keeps that write (each write has an epoch; a reload keeps the
/// writes made after it started).
///
/// The poll also vouches for it ([`Known::confirm`]): when the database's state version has
/// not moved since the copy was loaded, the copy is the database as of that poll. For
/// [`crate::sync::RELOAD_BOUND`] after such a poll began, the token endpoint answers known
/// accounts from the copy without a read; a change made elsewhere (another replica, the CLI)
/// is therefore honoured within that bound, as the poll's reload promises anyway.
pub(crate) struct Known {
    copy: RwLock<Copy>,
    /// At most this many token requests for an id the copy does not hold read the database at
    /// once (a flood of made-up ids cannot take the connections known accounts need).
    unknown_reads: tokio::sync::Semaphore,
}

#[derive(Default)]
struct Copy {
    rows: HashMap<String, Arc<KnownAccount>>,
    /// Bumped by every admin write of this issuer.
    epoch: u64,
    /// The admin writes since the last reload: client id, epoch and what was written.
    written: HashMap<String, (u64, Option<AccountRow>)>,
    /// The last reload the poll asked for succeeded: the copy holds every account of the
    /// database as of at most [`crate::sync::RELOAD_BOUND`] ago.
    fresh: bool,
    /// When the last poll that found the copy in step with the database began.
    confirmed: Option<tokio::time::Instant>,
}

/// An account as the token endpoint needs it: parsed once, when the copy takes its row.
pub(crate) struct KnownAccount {
    account: Account,
    secret_hash: String,
    /// The previous secret's hash and the end of its grace period (Unix seconds).
    previous: Option<(String, i64)>,
}

impl KnownAccount {
    fn new(row: &AccountRow) -> Arc<KnownAccount> {
        Arc::new(KnownAccount {
            account: account_from_row(row),
            secret_hash: row.secret_hash.clone(),
            previous: row
                .previous_secret_hash
                .clone()
                .zip(row.previous_secret_expires_at),
        })
    }
}

/// How many token requests for ids the copy does not hold may read the database at once
/// (the pool has 8 connections; the poll has its own).
const UNKNOWN_READS: usize = 2;

impl Default for Known {
    fn default() -> Self {
        Known {
            copy: RwLock::default(),
            unknown_reads: tokio::sync::Semaphore::new(UNKNOWN_READS),
        }
    }
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.copy.read().map_or(0, |k| k.rows.len());
        write!(f, "Known({n} accounts)")
    }
}

/// What the copy knows of one client id.
struct Remembered {
    account: Option<Arc<KnownAccount>>,
    /// See [`Copy::fresh`].
    fresh: bool,
    /// The copy is the database as of less than [`crate::sync::RELOAD_BOUND`] ago.
    confirmed: bool,
}

impl Known {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Copy> {
        self.copy.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Copy> {
        self.copy.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch a reload starts at (pass it to [`Known::replace_all`]).
    pub(crate) fn epoch(&self) -> u64 {
        self.read().epoch
    }

    /// Records an admin write of this issuer (`None`: the account is gone).
    pub(crate) fn record(&self, client_id: &str, row: Option<&AccountRow>) {
        let mut copy = self.write();
        copy.epoch += 1;
        let epoch = copy.epoch;
        copy.written
            .insert(client_id.to_owned(), (epoch, row.cloned()));
        match row {
            Some(row) => copy
                .rows
                .insert(client_id.to_owned(), KnownAccount::new(row)),
            None => copy.rows.remove(client_id),
        };
    }

    /// Replaces the copy with `rows`, read from the database after `started` (an epoch), but
    /// keeps every admin write recorded after `started`: the rows may predate it.
    pub(crate) fn replace_all(&self, mut rows: HashMap<String, AccountRow>, started: u64) {
        let mut copy = self.write();
        for (client_id, (epoch, row)) in copy.written.drain() {
            if epoch > started {
                match row {
                    Some(row) => rows.insert(client_id, row),
                    None => rows.remove(&client_id),
                };
            }
        }
        copy.rows = rows
            .into_iter()
            .map(|(client_id, row)| {
                let known = KnownAccount::new(&row);
                (client_id, known)
            })
            .collect();
        copy.fresh = true;
    }

    /// The poll could not reload after the database changed: the copy is behind. Ids it does
    /// not hold are looked up in the database again, and so are those it holds, until a reload
    /// succeeds.
    pub(crate) fn mark_stale(&self) {
        let mut copy = self.write();
        copy.fresh = false;
        copy.confirmed = None;
    }

    /// The poll that began at `at` found the copy in step with the database (its state
    /// version had not moved since the copy was loaded, or the copy was just reloaded).
    pub(crate) fn confirm(&self, at: tokio::time::Instant) {
        let mut copy = self.write();
        if copy.confirmed.is_none_or(|earlier| earlier < at) {
            copy.confirmed = Some(at);
        }
    }

    fn get(&self, client_id: &str) -> Remembered {
        let copy = self.read();
        Remembered {
            account: copy.rows.get(client_id).cloned(),
            fresh: copy.fresh,
            confirmed: copy
                .confirmed
                .is_some_and(|at| at.elapsed() < crate::sync::RELOAD_BOUND),
        }
    }
}

/// How long the token endpoint waits for an account read before it answers from memory.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// What the token endpoint needs: the account and the hashes that verify its secret now.
pub(crate) struct Credentials {
    known: Arc<KnownAccount>,
    /// The previous secret is in its grace period.
    previous_accepted: bool,
    /// Read from the in-memory copy because the database was unreachable.
    pub(crate) from_memory: bool,
}

impl Credentials {
    pub(crate) fn account(&self) -> &Account {
        &self.known.account
    }

    /// The hashes a presented secret may match: the current one, and the previous one during
    /// its grace period.
    pub(crate) fn accepted_hashes(&self) -> impl Iterator<Item = &str> + Clone {
        let previous = self
            .known
            .previous
            .as_ref()
            .filter(|_| self.previous_accepted);
        std::iter::once(self.known.secret_hash.as_str())
            .chain(previous.map(|(hash, _)| hash.as_str()))
    }
}

impl Accounts {
    /// Creates an account; its secret is in the answer and nowhere else.
    pub async fn create(&self, new: NewAccount) -> Result<CreatedAccount, Error> {
        let name = validate_name("name", &new.name)?;
        let description = validate_description(&new.description)?;
        let scopes = validate_scopes("scopes", &new.scopes)?;
        let nets = parse_nets("allowedIps", &new.allowed_ips)?;
        let audiences = validate_audiences("audiences", &new.audiences)?;
        let expires_at = self.validate_expiry(new.expires_at)?;
        let secret = generate_secret();
        let hash = self.hasher.hash(&secret).await?;
        let client_id = generate_client_id();
        let service_account_id = generate_service_account_id();
        let row = self
            .store
            .insert_account(NewAccountRow {
                service_account_id: &service_account_id,
                client_id: &client_id,
                name: &name,
                description: &description,
                scopes: to_json(&scopes),
                allowed_ips: to_json(&nets.iter().map(ToString::to_string).collect::<Vec<_>>()),
                audiences: to_json(&audiences),
                secret_hash: &hash,
                expires_at,
                now: self.now(),
            })
            .await?;
        self.remember(&client_id, Some(&row));
        self.changed();
        let account = account_from_row(&row);
        audit::admin("account_created", Some(&client_id), &name);
        Ok(CreatedAccount {
            account,
            client_secret: secret,
        })
    }

    /// One account, named by its service account id (`svc_…`) or its client id (as every
    /// method here that takes an `id`).
    pub async fn get(&self, id: &str) -> Result<Option<Account>, Error> {
        Ok(self
            .store
            .account(AccountRef::parse(id))
            .await?
            .as_ref()
            .map(account_from_row))
    }

    /// A page of at most `limit` accounts (1 to [`MAX_PAGE`]) after `cursor`.
    pub async fn list(&self, limit: u32, cursor: Option<&str>) -> Result<AccountPage, Error> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be 1 to {MAX_PAGE}")));
        }
        let after =
            match cursor {
                None | Some("") => 0,
                Some(c) => c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    Error::invalid("cursor", "is not a cursor from a previous page")
                })?,
            };
        let mut rows = self.store.accounts_after(after, limit + 1).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| r.id.to_string())
        } else {
            None
        };
        Ok(AccountPage {
            accounts: rows.iter().map(account_from_row).collect(),
            next_cursor,
        })
    }

    /// Changes an account; the change applies to the next token request.
    pub async fn update(&self, id: &str, update: AccountUpdate) -> Result<Account, Error> {
        let mut changes = AccountChanges::default();
        if let Some(name) = &update.name {
            changes.name = Some(validate_name("name", name)?);
        }
        if let Some(description) = &update.description {
            changes.description = Some(validate_description(description)?);
        }
        if let Some(scopes) = &update.scopes {
            changes.scopes = Some(to_json(&validate_scopes("scopes", scopes)?));
        }
        if let Some(ips) = &update.allowed_ips {
            let nets = parse_nets("allowedIps", ips)?;
            changes.allowed_ips = Some(to_json(
                &nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ));
        }
        if let Some(audiences) = &update.audiences {
            changes.audiences = Some(to_json(&validate_audiences("audiences", audiences)?));
        }
        changes.status = update.status.map(Status::as_str);
        if let Some(expires_at) = update.expires_at {
            changes.expires_at = Some(self.validate_expiry(expires_at)?);
        }
        let row = self
            .store
            .update_account(AccountRef::parse(id), changes, self.now())
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        self.remember(&row.client_id, Some(&row));
        self.changed();
        let client_id = row.client_id.as_str();
        if update.status == Some(Status::Disabled) {
            self.hasher.forget(client_id);
        }
        let mut what = Vec::new();
        for (changed, field) in [
            (update.name.is_some(), "name"),
            (update.description.is_some(), "description"),
            (update.scopes.is_some(), "scopes"),
            (update.allowed_ips.is_some(), "allowedIps"),
            (update.audiences.is_some(), "audiences"),
            (update.expires_at.is_some(), "expiresAt"),
        ] {
            if changed {
                what.push(field.to_owned());
            }
        }
        if let Some(status) = update.status {
            what.push(format!("status={}", status.as_str()));
        }
        audit::admin("account_updated", Some(client_id), &what.join(","));
        Ok(account_from_row(&row))
    }

    /// Disables an account (shorthand for an update of its status).
    pub async fn disable(&self, id: &str) -> Result<Account, Error> {
        self.set_status(id, Status::Disabled).await
    }

    /// Enables a disabled account again.
    pub async fn enable(&self, id: &str) -> Result<Account, Error> {
        self.set_status(id, Status::Active).await
    }

    async fn set_status(&self, id: &str, status: Status) -> Result<Account, Error> {
        let update = AccountUpdate {
            status: Some(status),
            ..AccountUpdate::default()
        };
        self.update(id, update).await
    }

    /// Gives the account a new secret. With a non-zero `grace_period` (at most
    /// [`MAX_GRACE_PERIOD`]) the current secret keeps working until it ends; a secret from an
    /// earlier rotation stops at once.
    pub async fn rotate_secret(
        &self,
        id: &str,
        grace_period: Duration,
    ) -> Result<RotatedSecret, Error> {
        if grace_period > MAX_GRACE_PERIOD {
            return Err(Error::invalid(
                "gracePeriodSeconds",
                format!("must be at most {}", MAX_GRACE_PERIOD.as_secs()),
            ));
        }
        let secret = generate_secret();
        let hash = self.hasher.hash(&secret).await?;
        let now = self.now();
        let previous_expires_at = (!grace_period.is_zero())
            .then(|| now.saturating_add(i64::try_from(grace_period.as_secs()).unwrap_or(i64::MAX)));
        let row = self
            .store
            .rotate_secret(AccountRef::parse(id), &hash, previous_expires_at, now)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        self.remember(&row.client_id, Some(&row));
        self.hasher.forget(&row.client_id);
        audit::admin(
            "secret_rotated",
            Some(&row.client_id),
            &format!("grace_period_seconds={}", grace_period.as_secs()),
        );
        Ok(RotatedSecret {
            account: account_from_row(&row),
            client_secret: secret,
        })
    }

    /// Deletes an account; its tokens already issued stay valid until they expire.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        let Some(client_id) = self.store.delete_account(AccountRef::parse(id)).await? else {
            return Err(Error::NotFound(id.to_owned()));
        };
        self.remember(&client_id, None);
        self.changed();
        self.hasher.forget(&client_id);
        audit::admin("account_deleted", Some(&client_id), "");
        Ok(())
    }

    /// The account and the secret hashes it accepts now: from the in-memory copy while the
    /// poll vouches for it (see [`Known`]); otherwise read from the database, or, while it is
    /// unreachable, from the copy (`from_memory`).
    ///
    /// Only the poll ([`crate::sync`]) decides that the database is unreachable: a read that
    /// fails or takes more than [`READ_TIMEOUT`] answers this one request from the copy and
    /// changes nothing else. An id the copy does not hold, while the copy is fresh (see
    /// [`Known`]), reads the database only with one of [`UNKNOWN_READS`] permits, waited for
    /// at most [`READ_TIMEOUT`] (an account created on another replica less than
    /// [`crate::sync::RELOAD_BOUND`] ago); otherwise it is unknown without a database read.
    pub(crate) async fn credentials(&self, client_id: &str) -> Result<Option<Credentials>, Error> {
        let remembered = self.known.get(client_id);
        let mut from_memory = !self.health.is_up();
        let known = if from_memory {
            remembered.account
        } else if remembered.confirmed && remembered.account.is_some() {
            // The copy is the database of less than RELOAD_BOUND ago: no read.
            remembered.account
        } else {
            // Waiting for a permit (not refusing at once): callers of an account created a
            // moment ago on another replica queue for a read; a flood of made-up ids holds at
            // most the permits' connections, and its requests give up after READ_TIMEOUT.
            let _permit = if remembered.account.is_none() && remembered.fresh {
                let permit = self.known.unknown_reads.acquire();
                match tokio::time::timeout(READ_TIMEOUT, permit).await {
                    Ok(Ok(permit)) => Some(permit),
                    Ok(Err(_)) | Err(_) => return Ok(None),
                }
            } else {
                None
            };
            // By client id only: a `svc_…` id is no credential.
            let read = self.store.account(AccountRef::ClientId(client_id));
            match tokio::time::timeout(READ_TIMEOUT, read).await {
                Ok(Ok(row)) => row.as_ref().map(KnownAccount::new),
                Ok(Err(e)) if e.is_unavailable() => {
                    tracing::warn!(error = %e, "an account read failed; answering from memory");
                    from_memory = true;
                    remembered.account
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    tracing::warn!(
                        "an account read took more than {} ms; answering from memory",
                        READ_TIMEOUT.as_millis()
                    );
                    from_memory = true;
                    remembered.account
                }
            }
        };
        let Some(known) = known else {
            return Ok(None);
        };
        let now = self.now();
        let previous_accepted = known
            .previous
            .as_ref()
            .is_some_and(|(_, until)| now < *until);
        Ok(Some(Credentials {
            known,
            previous_accepted,
            from_memory,
        }))
    }

    /// Updates the in-memory copy after an admin write of this issuer (`None`: it is gone).
    fn remember(&self, client_id: &str, row: Option<&AccountRow>) {
        self.known.record(client_id, row);
    }

    /// Reads every account into the in-memory copy (at start, and after another replica's
    /// change).
    pub(crate) async fn reload_all(&self) -> Result<(), Error> {
        let started = self.known.epoch();
        let mut all = HashMap::new();
        let mut after = 0;
        loop {
            let rows = self.store.accounts_after(after, MAX_PAGE).await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.id;
            all.extend(rows.into_iter().map(|r| (r.client_id.clone(), r)));
        }
        self.known.replace_all(all, started);
        Ok(())
    }

    /// Every scope of an active account, sorted, once each.
    pub(crate) async fn all_scopes(&self) -> Result<Vec<String>, Error> {
        let mut scopes: Vec<String> = self
            .store
            .all_scopes()
            .await?
            .iter()
            .flat_map(|json| from_json(json))
            .collect();
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.unix_now()).unwrap_or(i64::MAX)
    }

    /// Something changed the published scopes (the metadata cache's key moves).
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// An expiry must lie in the future (an account created or changed to be expired already
    /// is a mistake).
    fn validate_expiry(&self, expires_at: Option<u64>) -> Result<Option<i64>, Error> {
        let Some(t) = expires_at else {
            return Ok(None);
        };
        if t <= self.clock.unix_now() {
            return Err(Error::invalid(
                "expiresAt",
                format!("{} is not in the future", dates::format(t)),
            ));
        }
        Ok(Some(i64::try_from(t).unwrap_or(i64::MAX)))
    }
}

/// A new service account id: `svc_` and 8 random bytes in lowercase hex.
fn generate_service_account_id() -> String {
    let bytes: [u8; 8] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SERVICE_ACCOUNT_ID_PREFIX}{hex}")
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn from_json(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn unix(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

pub(crate) fn account_from_row(row: &AccountRow) -> Account {
    Account {
        service_account_id: row.service_account_id.clone(),
        client_id: row.client_id.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        scopes: from_json(&row.scopes),
        allowed_ips: from_json(&row.allowed_ips)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
        audiences: from_json(&row.audiences),
        status: if row.status == "ACTIVE" {
            Status::Active
        } else {
            Status::Disabled
        },
        created_at: unix(row.created_at),
        updated_at: unix(row.updated_at),
        expires_at: row.expires_at.map(unix),
        secret_rotated_at: row.secret_rotated_at.map(unix),
        previous_secret_expires_at: row.previous_secret_expires_at.map(unix),
    }
}

fn validate_name(field: &str, name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.chars().count() > 100 {
        return Err(Error::invalid(field, "must be at most 100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

fn validate_description(description: &str) -> Result<String, Error> {
    if description.chars().count() > 1000 {
        return Err(Error::invalid(
            "description",
            "must be at most 1000 characters",
        ));
    }
    Ok(description.to_owned())
}

/// A scope token of RFC 6749 §3.3: `1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn validate_scopes(field: &str, scopes: &[String]) -> Result<Vec<String>, Error> {
    if scopes.len() > 100 {
        return Err(Error::invalid(field, "at most 100 scopes"));
    }
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for (i, scope) in scopes.iter().enumerate() {
        if !is_scope_token(scope) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!(
                    "`{}` is not a scope token (printable ASCII without spaces, `\"` or `\\`)",
                    scope.escape_debug()
                ),
            ));
        }
        if !out.contains(scope) {
            out.push(scope.clone());
        }
    }
    Ok(out)
}

pub(crate) fn parse_nets(field: &str, cidrs: &[String]) -> Result<Vec<IpNet>, Error> {
    if cidrs.len() > 100 {
        return Err(Error::invalid(field, "at most 100 networks"));
    }
    let mut nets: Vec<IpNet> = Vec::with_capacity(cidrs.len());
    for (i, text) in cidrs.iter().enumerate() {
        let text = text.trim();
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                Error::invalid(
                    format!("{field}[{i}]"),
                    format!(
                        "`{}` is not a CIDR (e.g. 10.0.0.0/8) or an IP address",
                        text.escape_debug()
                    ),
                )
            })?
            .trunc();
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
                None => net,
            },
            other => other,
        };
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    Ok(nets)
}

fn validate_audiences(field: &str, audiences: &[String]) -> Result<Vec<String>, Error> {
    if audiences.len() > 100 {
        return Err(Error::invalid(field, "at most 100 audiences"));
    }
    let mut out: Vec<String> = Vec::with_capacity(audiences.len());
    for (i, aud) in audiences.iter().enumerate() {
        if aud.is_empty()
            || aud.len() > 500
            || aud.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                "must be 1 to 500 characters without spaces",
            ));
        }
        if !out.contains(aud) {
            out.push(aud.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An issuer whose poll is stopped before it first ran (these tests are single-threaded):
    /// nothing reloads or vouches for the copy behind the test's back.
    async fn issuer_with(name: &str) -> (crate::Issuer, String) {
        let mut config = crate::IssuerConfig::new("http://127.0.0.1:1");
        config.db = ":memory:".into();
        let issuer = crate::Issuer::open(config).await.unwrap();
        let poll = issuer.inner.sync_task.lock().unwrap().take();
        poll.expect("the poll task").abort();
        let created = issuer
            .accounts()
            .create(NewAccount::new(name))
            .await
            .unwrap();
        (issuer, created.account.client_id)
    }

    fn copy_status(accounts: &Accounts, client_id: &str) -> Option<String> {
        accounts
            .known
            .get(client_id)
            .account
            .map(|known| known.account.status.as_str().to_owned())
    }

    /// L6: a token request's read whose row is older than the copy's (it read the active row,
    /// an admin disable ended meanwhile) does not put that row back. The stale row is played
    /// by writing it to the database behind the copy's back, so the read returns it for sure.
    #[tokio::test]
    async fn a_token_read_that_ends_after_a_disable_leaves_the_copy_disabled() {
        let (issuer, id) = issuer_with("late-read").await;
        let accounts = issuer.accounts();
        accounts.disable(&id).await.unwrap();
        assert_eq!(copy_status(accounts, &id).as_deref(), Some("DISABLED"));
        let stale = AccountChanges {
            status: Some("ACTIVE"),
            ..AccountChanges::default()
        };
        accounts
            .store
            .update_account(AccountRef::ClientId(&id), stale, 0)
            .await
            .unwrap()
            .unwrap();
        let credentials = accounts.credentials(&id).await.unwrap().unwrap();
        assert_eq!(
            credentials.account().status,
            Status::Active,
            "read the stale row"
        );
        assert!(!credentials.from_memory);
        assert_eq!(copy_status(accounts, &id).as_deref(), Some("DISABLED"));
    }

    /// A copy the poll vouched for less than RELOAD_BOUND ago answers without a read; an older
    /// vouching, or a copy marked stale, does not. The database is changed behind the copy's
    /// back (as another replica would), so which one answered shows.
    #[tokio::test]
    async fn only_a_copy_vouched_for_lately_answers_without_a_read() {
        let (issuer, id) = issuer_with("vouched").await;
        let accounts = issuer.accounts();
        let disable = AccountChanges {
            status: Some("DISABLED"),
            ..AccountChanges::default()
        };
        accounts
            .store
            .update_account(AccountRef::ClientId(&id), disable, 0)
            .await
            .unwrap()
            .unwrap();
        let status = async || {
            let credentials = accounts.credentials(&id).await.unwrap().unwrap();
            assert!(!credentials.from_memory);
            credentials.account().status
        };
        // Never vouched for (no poll runs here): every request reads.
        assert_eq!(status().await, Status::Disabled);
        let now = tokio::time::Instant::now();
        let too_old = now
            .checked_sub(crate::sync::RELOAD_BOUND)
            .expect("the clock has run for a second");
        accounts.known.confirm(too_old);
        assert_eq!(status().await, Status::Disabled, "an old vouching reads");
        accounts.known.confirm(now);
        assert_eq!(status().await, Status::Active, "the copy answered");
        accounts.known.mark_stale();
        assert_eq!(status().await, Status::Disabled, "a stale copy reads");
    }

    /// L6: a reload whose rows were read before an admin disable, applied after it, keeps the
    /// disable; a later reload (rows read after it) agrees.
    #[tokio::test]
    async fn a_reload_that_read_before_a_disable_keeps_the_disable() {
        let (issuer, id) = issuer_with("late-reload").await;
        let accounts = issuer.accounts();
        let started = accounts.known.epoch();
        let old: HashMap<String, AccountRow> = accounts
            .store
            .accounts_after(0, MAX_PAGE)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.client_id.clone(), r))
            .collect();
        assert_eq!(old[&id].status, "ACTIVE");
        accounts.disable(&id).await.unwrap();
        accounts.known.replace_all(old, started);
        assert_eq!(copy_status(accounts, &id).as_deref(), Some("DISABLED"));
        // The same for a delete.
        let other = accounts.create(NewAccount::new("gone")).await.unwrap();
        let other = other.account.client_id;
        let started = accounts.known.epoch();
        let old: HashMap<String, AccountRow> = accounts
            .store
            .accounts_after(0, MAX_PAGE)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.client_id.clone(), r))
            .collect();
        accounts.delete(&other).await.unwrap();
        accounts.known.replace_all(old, started);
        assert_eq!(copy_status(accounts, &other), None);
        accounts.reload_all().await.unwrap();
        assert_eq!(copy_status(accounts, &id).as_deref(), Some("DISABLED"));
        assert_eq!(copy_status(accounts, &other), None);
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("orders:read"));
        assert!(is_scope_token("https://api.example.com/x"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn networks_parse_and_name_the_entry() {
        let nets = parse_nets(
            "allowedIps",
            &[
                "10.1.2.3/8".into(),
                "127.0.0.1".into(),
                "::ffff:192.168.0.0/112".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "127.0.0.1/32", "192.168.0.0/16"]
        );
        let err = parse_nets("allowedIps", &["10.0.0.0/8".into(), "10.0.0.0/33".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("allowedIps[1]"), "{err}");
    }

    #[test]
    fn ip_containment_treats_mapped_addresses_as_ipv4() {
        let account = Account {
            service_account_id: "svc_0000000000000000".into(),
            client_id: "c".into(),
            name: "n".into(),
            description: String::new(),
            scopes: vec![],
            allowed_ips: vec!["127.0.0.0/8".parse().unwrap()],
            audiences: vec![],
            status: Status::Active,
            created_at: 0,
            updated_at: 0,
            expires_at: None,
            secret_rotated_at: None,
            previous_secret_expires_at: None,
        };
        assert!(account.allows_ip("127.0.0.1".parse().unwrap()));
        assert!(account.allows_ip("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!account.allows_ip("10.0.0.1".parse().unwrap()));
    }
}

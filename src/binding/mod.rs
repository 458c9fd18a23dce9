//! The N-API surface: converts JavaScript values to core types and core results back.
//!
//! Errors cross as data: a synchronous throw carries relock's code as `error.code`, and a
//! failed call comes back as `{ code, message, cause }` (napi-rs cannot give a rejected
//! promise a custom code, so no call here returns a promise that can fail).

mod completions;
mod direct;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use std::sync::Arc;
use std::time::Instant;

use napi::bindgen_prelude::{within_runtime_if_available, Array, Env};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use completions::{Completions, Outcome, Wake};
use relock_core::{
  self as core, validate, AcquireOptions, AcquireSettings, ClientOptions, ClientSettings, HeldLock,
  Mode, ReplicaAckSettings, RetryPolicy, RetrySettings, SemaphoreSettings, TlsSettings,
};

/// The `code` of an error thrown synchronously to JavaScript: relock's stable code itself.
pub struct Code(String);

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    &self.0
  }
}

impl From<Status> for Code {
  fn from(status: Status) -> Code {
    Code(status.as_ref().to_owned())
  }
}

fn to_js(error: core::Error) -> napi::Error<Code> {
  napi::Error::new(Code(error.code().to_owned()), error.message().to_owned())
}

/// A failure as data, for callbacks and getters: the same `code` and `message` as a thrown one.
#[napi(object)]
pub struct ErrorInfo {
  pub code: String,
  pub message: String,
}

impl From<&core::Error> for ErrorInfo {
  fn from(error: &core::Error) -> ErrorInfo {
    ErrorInfo {
      code: error.code().to_owned(),
      message: error.message().to_owned(),
    }
  }
}

fn millis_until(deadline: Instant) -> f64 {
  deadline
    .saturating_duration_since(Instant::now())
    .as_secs_f64()
    * 1000.0
}

/// Client settings; every field is optional and in milliseconds unless said otherwise.
#[napi(object)]
#[derive(Default)]
pub struct ClientConfig {
  /// Bound on connecting to one host. Default 2000.
  pub connect_timeout: Option<f64>,
  /// Bound on one Redis round trip. Default 1000.
  pub command_timeout: Option<f64>,
  /// Share of the ttl set aside for clock drift between hosts. Default 0.01.
  pub drift_factor: Option<f64>,
  /// Further attempts `lock` makes when the key is busy or a quorum failed. Default 0.
  pub retry_count: Option<f64>,
  /// Pause between attempts. Default 100.
  pub retry_delay: Option<f64>,
  /// Upper bound of a random extra pause per attempt. Default 100.
  pub retry_jitter: Option<f64>,
  /// Time budget for all attempts of one `lock` call. Default: none (only `retryCount` bounds).
  pub retry_timeout: Option<f64>,
  /// ACL user name; takes precedence over one in the URLs.
  pub username: Option<String>,
  /// Password; takes precedence over one in the URLs.
  pub password: Option<String>,
  /// Certificates for `rediss://` hosts.
  pub tls: Option<TlsConfig>,
  /// Wait for replicas to copy each new lock.
  pub replica_ack: Option<ReplicaAckConfig>,
  /// Find the master through Sentinel: the URLs are then the Sentinels' addresses.
  pub sentinel: Option<SentinelConfig>,
  /// The URLs are seed nodes of one Redis Cluster. Default false.
  pub cluster: Option<bool>,
  /// Put before every key relock writes. Default: none.
  pub prefix: Option<String>,
}

/// A master found through Redis Sentinel.
#[napi(object)]
pub struct SentinelConfig {
  /// The name the Sentinels monitor the master under.
  pub name: String,
}

/// Waiting for replicas to copy each new lock (`WAIT`).
#[napi(object)]
pub struct ReplicaAckConfig {
  /// Replicas of each host that must have the lock.
  pub replicas: f64,
  /// Longest wait for them, in ms; shorter than `commandTimeout`. Default 100.
  pub timeout: Option<f64>,
  /// `'fail'` (release and reject), `'warn'` (keep the lock, report), or `'off'`. Default `'fail'`.
  pub policy: Option<String>,
}

/// TLS settings for `rediss://` hosts; certificates and keys in PEM.
#[napi(object)]
pub struct TlsConfig {
  /// Trust this CA instead of the system's.
  pub ca: Option<String>,
  /// Client certificate, for servers that require one.
  pub cert: Option<String>,
  /// Client private key, with `cert`.
  pub key: Option<String>,
  /// Accept any server certificate and host name. Leaves the connection open to interception.
  pub dangerously_accept_any_certificate: Option<bool>,
}

/// The client's options, as the core's rules and defaults make them.
fn client_options(config: &ClientConfig) -> core::Result<ClientOptions> {
  ClientSettings {
    connect_timeout: config.connect_timeout,
    command_timeout: config.command_timeout,
    drift_factor: config.drift_factor,
    retry: RetrySettings {
      count: config.retry_count,
      delay: config.retry_delay,
      jitter: config.retry_jitter,
      timeout: config.retry_timeout,
    },
    username: config.username.clone(),
    password: config.password.clone(),
    tls: config.tls.as_ref().map(|tls| TlsSettings {
      ca: tls.ca.clone(),
      cert: tls.cert.clone(),
      key: tls.key.clone(),
      dangerously_accept_any_certificate: tls.dangerously_accept_any_certificate,
    }),
    replica_ack: config.replica_ack.as_ref().map(|ack| ReplicaAckSettings {
      replicas: ack.replicas,
      timeout: ack.timeout,
      policy: ack.policy.clone(),
    }),
    sentinel: config
      .sentinel
      .as_ref()
      .map(|sentinel| sentinel.name.clone()),
    cluster: config.cluster,
    prefix: config.prefix.clone(),
  }
  .resolve()
}

/// Per-call overrides of the client's retry settings for `lock`.
#[napi(object)]
#[derive(Default)]
pub struct LockConfig {
  pub retry_count: Option<f64>,
  pub retry_delay: Option<f64>,
  pub retry_jitter: Option<f64>,
  pub retry_timeout: Option<f64>,
}

fn retry_policy(config: &LockConfig, defaults: &RetryPolicy) -> core::Result<RetryPolicy> {
  RetrySettings {
    count: config.retry_count,
    delay: config.retry_delay,
    jitter: config.retry_jitter,
    timeout: config.retry_timeout,
  }
  .resolve(defaults)
}

/// The ttl and retry policy of a `lock` call, checked.
fn lock_arguments(
  engine: &core::engine::Engine,
  ttl: f64,
  retry: Option<LockConfig>,
) -> napi::Result<(u64, RetryPolicy), Code> {
  let ttl_ms = validate::lease("ttl", ttl).map_err(to_js)?;
  let retry = match retry {
    Some(config) => retry_policy(&config, &engine.options().retry).map_err(to_js)?,
    None => engine.options().retry.clone(),
  };
  Ok((ttl_ms, retry))
}

#[napi(js_name = "NativeClient")]
pub struct NativeClient {
  core: Arc<core::Client>,
  completions: Arc<Completions>,
}

#[napi]
impl NativeClient {
  /// `on_completed` is called, without arguments, whenever results of `lock`, `unlock`,
  /// `extend` or `lockWithValidity` are waiting in `takeCompleted()`.
  ///
  /// `on_notice` is called with a coded message for problems that do not fail a call (a
  /// replica shortfall under the `warn` policy).
  ///
  /// `on_log`, when given, is called with `"<level> <line>"` for what the client does that
  /// callers do not see (connections lost and regained, retries, failovers, failed renewals).
  #[napi(constructor)]
  pub fn new(
    urls: Vec<String>,
    config: Option<ClientConfig>,
    on_completed: Wake,
    on_notice: ThreadsafeFunction<ErrorInfo, (), ErrorInfo, Status, false, true>,
    on_log: Option<ThreadsafeFunction<String, (), String, Status, false, true>>,
  ) -> napi::Result<Self, Code> {
    let mut options = client_options(&config.unwrap_or_default()).map_err(to_js)?;
    options.on_notice = Some(Arc::new(move |notice: &core::Error| {
      on_notice.call(
        ErrorInfo::from(notice),
        ThreadsafeFunctionCallMode::NonBlocking,
      );
    }));
    if let Some(on_log) = on_log {
      options.log = Some(Arc::new(move |level: core::LogLevel, line: String| {
        on_log.call(
          format!("{} {line}", level.name()),
          ThreadsafeFunctionCallMode::NonBlocking,
        );
      }));
    }
    let client =
      within_runtime_if_available(|| core::Client::new(&urls, options)).map_err(to_js)?;
    Ok(NativeClient {
      core: Arc::new(client),
      completions: Arc::new(Completions::new(on_completed)),
    })
  }

  /// `lock`, `unlock` and `extend` over sockets that JavaScript drives, or null when a host
  /// needs the native connections (Sentinel, Cluster, TLS, replicaAck).
  #[napi]
  pub fn direct(&self) -> Option<direct::NativeDirect> {
    direct::NativeDirect::new(&self.core, self.completions.clone())
  }

  /// Number of Redis hosts (1 for a single instance, N for Redlock).
  #[napi(getter)]
  pub fn host_count(&self) -> u32 {
    self.core.engine().hosts().len() as u32
  }

  /// The hosts, by address; never with credentials.
  #[napi(getter)]
  pub fn host_labels(&self) -> Vec<String> {
    self
      .core
      .engine()
      .hosts()
      .iter()
      .map(|host| host.label().to_owned())
      .collect()
  }

  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.core.engine().is_closed()
  }

  /// The results of finished calls, as flat `[id, ok, value, extra]` records.
  #[napi(ts_return_type = "Array<number | boolean | string | null | undefined>")]
  pub fn take_completed<'env>(&self, env: &'env Env) -> napi::Result<Array<'env>> {
    self.completions.take(env)
  }

  /// Starts `lock`; its result arrives under `id`: the token, or null.
  #[napi]
  pub fn lock(
    &self,
    env: Env,
    id: u32,
    key: String,
    ttl: f64,
    retry: Option<LockConfig>,
  ) -> napi::Result<(), Code> {
    let (ttl_ms, retry) = lock_arguments(self.core.engine(), ttl, retry)?;
    let mutex = self.core.mutex().clone();
    self.start(&env, id, async move {
      mutex
        .lock(&key, ttl_ms, &retry)
        .await
        .map(|lease| Outcome::Token(lease.map(|lease| lease.token)))
    });
    Ok(())
  }

  /// Starts `lockWithValidity`; its result arrives under `id`: the token and the validity in
  /// ms, or null.
  #[napi]
  pub fn lock_with_validity(
    &self,
    env: Env,
    id: u32,
    key: String,
    ttl: f64,
    retry: Option<LockConfig>,
  ) -> napi::Result<(), Code> {
    let (ttl_ms, retry) = lock_arguments(self.core.engine(), ttl, retry)?;
    let mutex = self.core.mutex().clone();
    self.start(&env, id, async move {
      let lease = mutex.lock(&key, ttl_ms, &retry).await?;
      Ok(Outcome::Lease(
        lease.map(|lease| (lease.token, millis_until(lease.valid_until))),
      ))
    });
    Ok(())
  }

  /// Starts `extend`; its result arrives under `id`: true if renewed.
  #[napi]
  pub fn extend(
    &self,
    env: Env,
    id: u32,
    key: String,
    token: String,
    ttl: f64,
  ) -> napi::Result<(), Code> {
    let ttl_ms = validate::lease("ttl", ttl).map_err(to_js)?;
    let mutex = self.core.mutex().clone();
    self.start(&env, id, async move {
      Ok(Outcome::Flag(
        mutex.extend(&key, &token, ttl_ms).await?.is_some(),
      ))
    });
    Ok(())
  }

  /// Starts `unlock`; its result arrives under `id`: true if released.
  #[napi]
  pub fn unlock(&self, env: Env, id: u32, key: String, token: String) {
    let mutex = self.core.mutex().clone();
    self.start(&env, id, async move {
      Ok(Outcome::Flag(mutex.unlock(&key, &token).await?))
    });
  }

  fn start(
    &self,
    env: &Env,
    id: u32,
    call: impl Future<Output = core::Result<Outcome>> + Send + 'static,
  ) {
    self.completions.started(env);
    let completions = self.completions.clone();
    napi::bindgen_prelude::spawn(async move {
      // A panic must still settle the promise, or the call would hang and keep the loop alive.
      let outcome = match AssertUnwindSafe(call).catch_unwind().await {
        Ok(result) => result.unwrap_or_else(Outcome::Failed),
        Err(_) => Outcome::Failed(core::Error::new(
          core::ErrorKind::Internal,
          "the call failed unexpectedly",
        )),
      };
      completions.finish(id, outcome);
    });
  }

  /// Counters of what this client's locks did since it was created.
  #[napi]
  pub fn stats(&self) -> LockStats {
    let counts = self.core.engine().stats().counts();
    LockStats {
      locked: counts.locked as f64,
      busy: counts.busy as f64,
      unlocked: counts.unlocked as f64,
      acquired: counts.acquired as f64,
      released: counts.released as f64,
      renewed: counts.renewed as f64,
      lost: counts.lost as f64,
      wait_timed_out: counts.wait_timed_out as f64,
      aborted: counts.aborted as f64,
      failed: counts.failed as f64,
      closed: counts.closed as f64,
    }
  }

  /// The state of `key` on every host.
  #[napi]
  pub fn inspect(&self, env: Env, id: u32, key: String) {
    let mutex = self.core.mutex().clone();
    self.start(&env, id, async move {
      Ok(Outcome::States(mutex.inspect(&key).await?))
    });
  }

  /// Lock keys matching a glob `pattern`, by SCAN; at most `limit` (default and cap 10000).
  #[napi]
  pub fn list(
    &self,
    env: Env,
    id: u32,
    pattern: String,
    limit: Option<f64>,
  ) -> napi::Result<(), Code> {
    let limit = match limit {
      Some(limit) => {
        validate::count("limit", limit, core::LIST_LIMIT as u64).map_err(to_js)? as usize
      }
      None => core::LIST_LIMIT,
    };
    let mutex = self.core.mutex().clone();
    self.start(&env, id, async move {
      Ok(Outcome::Listing(mutex.list(&pattern, limit).await?))
    });
    Ok(())
  }

  /// Releases `key` whoever holds it; true if it was held and is now released.
  #[napi]
  pub fn force_release(&self, env: Env, id: u32, key: String) {
    let mutex = self.core.mutex().clone();
    self.start(&env, id, async move {
      Ok(Outcome::Flag(mutex.force_release(&key).await?))
    });
  }

  /// Ends pending calls, refuses new ones, and releases the locks held through handles.
  #[napi]
  pub async fn close(&self) {
    self.core.close().await;
  }

  /// Starts waiting for `key`; the wait runs in the Rust core until it succeeds, times out, is
  /// cancelled through the returned request, or the client closes. If the lock is later lost,
  /// `takeCompleted()` reports it under `lost_id`.
  #[napi]
  pub fn acquire(
    &self,
    env: Env,
    id: u32,
    key: String,
    config: Option<AcquireConfig>,
    lost_id: u32,
  ) -> napi::Result<AcquireRequest, Code> {
    let options = acquire_options(&config.unwrap_or_default()).map_err(to_js)?;
    let cancel = CancellationToken::new();
    let wait = self.core.mutex().begin_acquire(
      &key,
      options,
      cancel.clone(),
      self.completions.lost_callback(lost_id),
    );
    Ok(self.start_wait(&env, id, cancel, wait))
  }

  /// As `acquire`, for a read (`write` false) or write hold of a read-write lock.
  #[napi]
  pub fn acquire_read_write(
    &self,
    env: Env,
    id: u32,
    key: String,
    write: bool,
    config: Option<AcquireConfig>,
    lost_id: u32,
  ) -> napi::Result<AcquireRequest, Code> {
    let options = acquire_options(&config.unwrap_or_default()).map_err(to_js)?;
    let mode = if write { Mode::Write } else { Mode::Read };
    let cancel = CancellationToken::new();
    let wait = self.core.rwlock().begin_acquire(
      &key,
      mode,
      options,
      cancel.clone(),
      self.completions.lost_callback(lost_id),
    );
    Ok(self.start_wait(&env, id, cancel, wait))
  }

  /// As `acquire`, for `count` of a semaphore's `permits`.
  #[napi]
  pub fn acquire_permits(
    &self,
    env: Env,
    id: u32,
    key: String,
    permits: f64,
    config: Option<PermitsConfig>,
    lost_id: u32,
  ) -> napi::Result<AcquireRequest, Code> {
    let options = permits_options(permits, config).map_err(to_js)?;
    let cancel = CancellationToken::new();
    let wait = self.core.semaphore().begin_acquire(
      &key,
      options,
      cancel.clone(),
      self.completions.lost_callback(lost_id),
    );
    Ok(self.start_wait(&env, id, cancel, wait))
  }

  /// As `acquire`, for every one of `keys` or none.
  #[napi]
  pub fn acquire_many(
    &self,
    env: Env,
    id: u32,
    keys: Vec<String>,
    config: Option<AcquireConfig>,
    lost_id: u32,
  ) -> napi::Result<AcquireRequest, Code> {
    let options = acquire_options(&config.unwrap_or_default()).map_err(to_js)?;
    let cancel = CancellationToken::new();
    let wait = self.core.multi().begin_acquire(
      &keys,
      options,
      cancel.clone(),
      self.completions.lost_callback(lost_id),
    );
    Ok(self.start_wait(&env, id, cancel, wait))
  }

  fn start_wait(
    &self,
    env: &Env,
    id: u32,
    cancel: CancellationToken,
    wait: impl Future<Output = core::Result<Arc<HeldLock>>> + Send + 'static,
  ) -> AcquireRequest {
    self.start(env, id, async move { Ok(Outcome::Held(wait.await?)) });
    AcquireRequest { cancel }
  }

  /// Starts `lock` over several keys; its result arrives under `id`: the token, or null.
  #[napi]
  pub fn lock_many(
    &self,
    env: Env,
    id: u32,
    keys: Vec<String>,
    ttl: f64,
  ) -> napi::Result<(), Code> {
    let ttl_ms = validate::lease("ttl", ttl).map_err(to_js)?;
    let multi = self.core.multi().clone();
    self.start(&env, id, async move {
      let lease = multi.lock(&keys, ttl_ms).await?;
      Ok(Outcome::Token(lease.map(|lease| lease.token)))
    });
    Ok(())
  }

  /// Starts `unlock` over several keys; its result arrives under `id`: true if `token` held
  /// all of them.
  #[napi]
  pub fn unlock_many(&self, env: Env, id: u32, keys: Vec<String>, token: String) {
    let multi = self.core.multi().clone();
    self.start(&env, id, async move {
      Ok(Outcome::Flag(multi.unlock(&keys, &token).await?))
    });
  }

  /// Starts turning a write hold into a read hold; done under `id`.
  #[napi]
  pub fn downgrade(&self, env: Env, id: u32, lock: &NativeLock) {
    let (rwlock, held) = (self.core.rwlock().clone(), lock.held.clone());
    self.start(&env, id, async move {
      rwlock.downgrade(&held).await?;
      Ok(Outcome::Done)
    });
  }

  /// Starts turning a read hold into the write hold; done under `id` (the new fence is then
  /// the lock's).
  #[napi]
  pub fn upgrade(&self, env: Env, id: u32, lock: &NativeLock) {
    let (rwlock, held) = (self.core.rwlock().clone(), lock.held.clone());
    self.start(&env, id, async move {
      rwlock.upgrade(&held).await?;
      Ok(Outcome::Done)
    });
  }

  /// Starts reading a semaphore's state; it arrives under `id`.
  #[napi]
  pub fn semaphore_state(&self, env: Env, id: u32, key: String) {
    let semaphore = self.core.semaphore().clone();
    self.start(&env, id, async move {
      Ok(Outcome::Semaphore(semaphore.state(&key).await?))
    });
  }

  /// Starts reading a read-write lock's state; it arrives under `id`.
  #[napi]
  pub fn rwlock_state(&self, env: Env, id: u32, key: String) {
    let rwlock = self.core.rwlock().clone();
    self.start(&env, id, async move {
      Ok(Outcome::ReadWrite(rwlock.state(&key).await?))
    });
  }

  /// Starts renewing a held lock to `ttl` ms now; its result arrives under `id`.
  #[napi]
  pub fn extend_held(
    &self,
    env: Env,
    id: u32,
    lock: &NativeLock,
    ttl: f64,
  ) -> napi::Result<(), Code> {
    let ttl_ms = validate::lease("ttl", ttl).map_err(to_js)?;
    let held = lock.held.clone();
    self.start(&env, id, async move {
      held.extend(ttl_ms).await?;
      Ok(Outcome::Done)
    });
    Ok(())
  }

  /// Starts the release of a held lock; its result arrives under `id`: true if this call
  /// released it, false if it had been released before.
  #[napi]
  pub fn release(&self, env: Env, id: u32, lock: &NativeLock) {
    let held = lock.held.clone();
    self.start(
      &env,
      id,
      async move { Ok(Outcome::Flag(held.release().await?)) },
    );
  }
}

/// Counters of what a client's locks did.
#[napi(object)]
pub struct LockStats {
  /// `lock` calls that took their key.
  pub locked: f64,
  /// `lock` calls that found their key held.
  pub busy: f64,
  /// `unlock` calls that released a lock.
  pub unlocked: f64,
  /// `acquire` calls that got their lock.
  pub acquired: f64,
  /// Locks released through their handle.
  pub released: f64,
  /// Renewals by the watchdog.
  pub renewed: f64,
  /// Held locks that were lost.
  pub lost: f64,
  /// `acquire` calls that ran out of `waitTimeout`.
  pub wait_timed_out: f64,
  /// `acquire` calls aborted through their signal.
  pub aborted: f64,
  /// Calls that failed for another reason (hosts down, no quorum, …).
  pub failed: f64,
  /// Held locks released, and calls and waits ended, by `close()`.
  pub closed: f64,
}

/// The state of one lock on one host.
#[napi(object)]
pub struct LockInfo {
  pub host: String,
  /// The holder's token, or null when the lock is free.
  pub holder: Option<String>,
  /// Remaining ttl in ms, or null.
  pub ttl: Option<f64>,
  /// The last fencing number handed out for the key, or null.
  pub fence: Option<f64>,
  /// Fair waiters in queue order.
  pub waiters: Vec<WaiterInfo>,
  /// True when the key holds something other than a relock lock (application data, another
  /// client's lock); `holder` is then null and `forceRelease` refuses the key.
  pub foreign: bool,
  /// True when the key is a relock semaphore (its holders: `semaphore(key).state()`).
  pub semaphore: bool,
  /// How many readers hold the key as a read-write lock (they: `rwlock(key).state()`).
  pub readers: u32,
  /// Why this host could not be asked (its other fields are then empty).
  pub error: Option<HostFailure>,
}

/// A host that could not be asked, and why.
#[napi(object)]
pub struct HostFailure {
  pub host: String,
  pub code: String,
  pub message: String,
}

/// What `list` found, and the hosts that could not be asked.
#[napi(object)]
pub struct ListingInfo {
  pub keys: Vec<String>,
  pub failed_hosts: Vec<HostFailure>,
}

#[napi(object)]
pub struct WaiterInfo {
  pub token: String,
  /// Ms before the waiter is dropped unless it checks in again (by Redis's clock).
  pub expires_in: Option<f64>,
  /// The lease it asked for, in ms.
  pub ttl: Option<f64>,
}

impl From<&core::Listing> for ListingInfo {
  fn from(listing: &core::Listing) -> ListingInfo {
    ListingInfo {
      keys: listing.keys.clone(),
      failed_hosts: listing
        .failed
        .iter()
        .map(|(host, error)| HostFailure {
          host: host.clone(),
          code: error.code().to_owned(),
          message: error.message().to_owned(),
        })
        .collect(),
    }
  }
}

impl From<core::LockState> for LockInfo {
  fn from(state: core::LockState) -> LockInfo {
    let host = state.host;
    LockInfo {
      host: host.clone(),
      holder: state.holder,
      ttl: state.ttl_ms.map(|ms| ms as f64),
      fence: state.fence.map(|fence| fence as f64),
      waiters: state
        .waiters
        .into_iter()
        .map(|waiter| WaiterInfo {
          token: waiter.token,
          expires_in: waiter.expires_in_ms.map(|ms| ms as f64),
          ttl: waiter.ttl_ms.map(|ms| ms as f64),
        })
        .collect(),
      foreign: state.foreign,
      semaphore: state.semaphore,
      readers: state.readers.min(u32::MAX as u64) as u32,
      error: state.error.map(|error| HostFailure {
        host: host.clone(),
        code: error.code().to_owned(),
        message: error.message().to_owned(),
      }),
    }
  }
}

/// Settings of a blocking acquire; durations in milliseconds.
#[napi(object)]
#[derive(Default)]
pub struct AcquireConfig {
  /// Lease; the watchdog keeps renewing it while held. Default 30000.
  pub ttl: Option<f64>,
  /// How long to wait; `Infinity` waits without limit. Default 10000.
  pub wait_timeout: Option<f64>,
  /// First come, first served among waiters of all processes. Default false.
  pub fair: Option<bool>,
  /// Renew the lease from the native core while held. Default true.
  pub watchdog: Option<bool>,
  /// Cap on the total hold time: renewal stops after it and the lock expires. Default: none.
  pub max_hold: Option<f64>,
}

fn acquire_settings(config: &AcquireConfig) -> AcquireSettings {
  AcquireSettings {
    ttl: config.ttl,
    wait_timeout: config.wait_timeout,
    fair: config.fair,
    watchdog: config.watchdog,
    max_hold: config.max_hold,
  }
}

fn acquire_options(config: &AcquireConfig) -> core::Result<AcquireOptions> {
  acquire_settings(config).resolve()
}

/// Settings of a semaphore's acquire: those of `acquire`, and how many permits to take.
#[napi(object)]
#[derive(Default)]
pub struct PermitsConfig {
  /// Permits to take. Default 1.
  pub permits: Option<f64>,
  pub ttl: Option<f64>,
  pub wait_timeout: Option<f64>,
  pub fair: Option<bool>,
  pub watchdog: Option<bool>,
  pub max_hold: Option<f64>,
}

impl PermitsConfig {
  fn acquire(&self) -> AcquireConfig {
    AcquireConfig {
      ttl: self.ttl,
      wait_timeout: self.wait_timeout,
      fair: self.fair,
      watchdog: self.watchdog,
      max_hold: self.max_hold,
    }
  }
}

fn permits_options(
  permits: f64,
  config: Option<PermitsConfig>,
) -> core::Result<core::SemaphoreOptions> {
  let config = config.unwrap_or_default();
  SemaphoreSettings {
    permits,
    count: config.permits,
    acquire: acquire_settings(&config.acquire()),
  }
  .resolve()
}

/// A semaphore's state.
#[napi(object)]
pub struct SemaphoreInfo {
  pub in_use: f64,
  /// Holders, soonest lease end first (at most 1000).
  pub holders: Vec<PermitHolderInfo>,
  /// Fair waiters' tokens in queue order (at most 1000).
  pub queue: Vec<String>,
  pub holder_count: f64,
  pub queue_length: f64,
  pub fence: f64,
}

#[napi(object)]
pub struct PermitHolderInfo {
  pub token: String,
  pub permits: f64,
  /// Ms left on its lease.
  pub ttl: f64,
}

impl From<&core::SemaphoreState> for SemaphoreInfo {
  fn from(state: &core::SemaphoreState) -> SemaphoreInfo {
    SemaphoreInfo {
      in_use: state.in_use as f64,
      holders: state
        .holders
        .iter()
        .map(|holder| PermitHolderInfo {
          token: holder.token.clone(),
          permits: holder.permits as f64,
          ttl: holder.ttl_ms as f64,
        })
        .collect(),
      queue: state.queue.clone(),
      holder_count: state.holder_count as f64,
      queue_length: state.queue_length as f64,
      fence: state.fence as f64,
    }
  }
}

/// A read-write lock's state.
#[napi(object)]
pub struct ReadWriteInfo {
  /// The writer's token, or null.
  pub writer: Option<String>,
  /// Ms left on the writer's lease, or null.
  pub writer_ttl: Option<f64>,
  /// Readers, soonest lease end first (at most 1000).
  pub readers: Vec<ReaderInfo>,
  pub reader_count: f64,
  pub waiting_writers: f64,
  /// Fair waiters in queue order (at most 1000).
  pub queue: Vec<QueuedInfo>,
  pub queue_length: f64,
  pub fence: f64,
}

#[napi(object)]
pub struct ReaderInfo {
  pub token: String,
  pub ttl: f64,
}

#[napi(object)]
pub struct QueuedInfo {
  /// `'read'` or `'write'`.
  pub mode: String,
  pub token: String,
}

impl From<&core::RwState> for ReadWriteInfo {
  fn from(state: &core::RwState) -> ReadWriteInfo {
    ReadWriteInfo {
      writer: state.writer.clone(),
      writer_ttl: state.writer_ttl_ms.map(|ms| ms as f64),
      readers: state
        .readers
        .iter()
        .map(|(token, ttl)| ReaderInfo {
          token: token.clone(),
          ttl: *ttl as f64,
        })
        .collect(),
      reader_count: state.reader_count as f64,
      waiting_writers: state.waiting_writers as f64,
      queue: state
        .queue
        .iter()
        .map(|(mode, token)| QueuedInfo {
          mode: match mode {
            Mode::Read => "read",
            Mode::Write => "write",
          }
          .to_owned(),
          token: token.clone(),
        })
        .collect(),
      queue_length: state.queue_length as f64,
      fence: state.fence as f64,
    }
  }
}

/// One key of a multi-key lock, with its fence.
#[napi(object)]
pub struct KeyFence {
  pub key: String,
  pub fence: i64,
}

/// A wait for a lock in progress; its outcome arrives through the client's completions.
#[napi]
pub struct AcquireRequest {
  cancel: CancellationToken,
}

#[napi]
impl AcquireRequest {
  /// Stops the wait; the outcome then rejects with `ABORT_ERR` (unless the lock came first).
  #[napi]
  pub fn cancel(&self) {
    self.cancel.cancel();
  }
}

/// A lock held through a handle, renewed by the native watchdog.
#[napi]
pub struct NativeLock {
  pub(crate) held: Arc<HeldLock>,
}

#[napi]
impl NativeLock {
  #[napi(getter)]
  pub fn key(&self) -> String {
    self.held.key().to_owned()
  }

  #[napi(getter)]
  pub fn token(&self) -> String {
    self.held.token().to_owned()
  }

  /// Fencing number: strictly greater than every fence handed out before for this key.
  #[napi(getter)]
  pub fn fence(&self) -> i64 {
    self.held.fence()
  }

  #[napi]
  pub fn is_valid(&self) -> bool {
    self.held.is_valid()
  }

  #[napi]
  pub fn remaining_ms(&self) -> f64 {
    self.held.remaining().as_secs_f64() * 1000.0
  }

  /// A multi-key lock's keys with their fences, in the caller's order; empty for one key.
  #[napi(getter)]
  pub fn parts(&self) -> Vec<KeyFence> {
    self
      .held
      .parts()
      .iter()
      .map(|(key, fence)| KeyFence {
        key: key.clone(),
        fence: *fence,
      })
      .collect()
  }

  /// Why the lock was lost, or null while it is not.
  #[napi(getter)]
  pub fn lost_reason(&self) -> Option<ErrorInfo> {
    self.held.lost_reason().as_ref().map(ErrorInfo::from)
  }
}

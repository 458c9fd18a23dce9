//! The lock client: one connection per Redis host, and the single-attempt operations on them.
//! With one host these are the classic single-instance lock; with several, Redlock.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acquire::{FairLines, Gates};
use crate::notify::Notifications;

use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;
use crate::options::{ClientOptions, LogLevel, ReplicaPolicy, RetryPolicy};
use crate::quorum::{self, Tally, Vote};
use crate::scripts::{LockKeys, Wake, EXTEND};
use crate::stats::{Event, Stats};
use crate::validate;

/// A lock taken on a quorum of hosts.
#[derive(Debug, Clone)]
pub struct Lease {
  pub token: String,
  /// Until when the lock is safe to rely on, by this process's monotonic clock.
  pub valid_until: Instant,
}

/// Outcome of one attempt that did not fail.
enum Attempt {
  Taken(Lease),
  /// Held by someone else; the holder's remaining ttl when a host told it.
  Busy,
}

pub struct Client {
  hosts: Vec<Arc<Host>>,
  options: ClientOptions,
  closed: CancellationToken,
  notifications: Arc<Notifications>,
  gates: Gates,
  fair_lines: FairLines,
  /// Guardian tasks of held locks; `close` waits for them to release their locks.
  guardians: TaskTracker,
  stats: Stats,
  /// Set once the hosts turn out not to be independent (two URLs that reach one server).
  misconfigured: Arc<std::sync::OnceLock<Error>>,
  hosts_checked: std::sync::atomic::AtomicBool,
}

impl Client {
  /// Prepares a client for `urls`; connects lazily, on first use. Must run inside a tokio
  /// runtime.
  pub fn new(urls: &[String], options: ClientOptions) -> Result<Client> {
    if urls.is_empty() {
      return Err(Error::invalid_argument("at least one Redis URL is needed"));
    }
    let unsupported = |what: &str| Err(Error::new(ErrorKind::Unsupported, what.to_owned()));
    let hosts = match (&options.sentinel, options.cluster) {
      (Some(_), true) => return unsupported("sentinel and cluster cannot be combined"),
      (None, true) if options.replica_ack.is_some() => {
        return unsupported("replicaAck is not supported on a cluster yet")
      }
      (None, true) => vec![Arc::new(Host::cluster(urls, &options)?)],
      (Some(name), false) => vec![Arc::new(Host::through_sentinels(urls, name, &options)?)],
      (None, false) => urls
        .iter()
        .map(|url| Host::connect_lazily(url, &options).map(Arc::new))
        .collect::<Result<Vec<_>>>()?,
    };
    for (index, host) in hosts.iter().enumerate() {
      if hosts[..index]
        .iter()
        .any(|earlier| earlier.label() == host.label())
      {
        return Err(Error::invalid_argument(format!(
          "{} is listed twice; Redlock needs independent hosts",
          host.label()
        )));
      }
    }
    let notifications = Arc::new(Notifications::new(hosts.clone(), options.clone()));
    Ok(Client {
      hosts,
      options,
      closed: CancellationToken::new(),
      notifications,
      gates: Gates::default(),
      fair_lines: FairLines::default(),
      guardians: TaskTracker::new(),
      stats: Stats::default(),
      misconfigured: Arc::default(),
      hosts_checked: std::sync::atomic::AtomicBool::new(false),
    })
  }

  pub fn options(&self) -> &ClientOptions {
    &self.options
  }

  /// The key as stored in Redis: with the client's prefix.
  pub fn redis_key<'k>(&self, key: &'k str) -> std::borrow::Cow<'k, str> {
    if self.options.prefix.is_empty() {
      std::borrow::Cow::Borrowed(key)
    } else {
      std::borrow::Cow::Owned(format!("{}{key}", self.options.prefix))
    }
  }

  pub fn hosts(&self) -> &[Arc<Host>] {
    &self.hosts
  }

  pub fn is_closed(&self) -> bool {
    self.closed.is_cancelled()
  }

  /// Ends every pending call of this client with [`ErrorKind::Closed`], refuses new ones, and
  /// releases the locks held through handles (each release bounded by the host timeouts).
  pub async fn close(&self) {
    self.closed.cancel();
    self.guardians.close();
    self.guardians.wait().await;
  }

  pub fn stats(&self) -> &Stats {
    &self.stats
  }

  /// Counts the outcome of a call: `success` if it succeeded, [`Event::Failed`] if it failed.
  pub fn count<T>(&self, outcome: &Result<T>, success: impl FnOnce(&T) -> Option<Event>) {
    let event = match outcome {
      Ok(value) => success(value),
      Err(error) => Some(match error.kind() {
        ErrorKind::WaitTimeout => Event::WaitTimedOut,
        ErrorKind::Aborted => Event::Aborted,
        ErrorKind::Closed => Event::Closed,
        _ => Event::Failed,
      }),
    };
    if let Some(event) = event {
      self.stats.record(event);
    }
  }

  pub fn notifications(&self) -> &Arc<Notifications> {
    &self.notifications
  }

  pub fn gates(&self) -> &Gates {
    &self.gates
  }

  pub fn fair_lines(&self) -> &FairLines {
    &self.fair_lines
  }

  /// Runs a held lock's guardian task.
  pub fn track(&self, guardian: impl Future<Output = ()> + Send + 'static) {
    self.guardians.spawn(guardian);
  }

  pub fn closed_token(&self) -> &CancellationToken {
    &self.closed
  }

  /// Refuses calls on a closed client. A call already running when the client closes runs to
  /// its end (each is bounded by the host timeouts); waits end at once (see `acquire`), and
  /// the JavaScript layer settles every pending call when it closes.
  pub fn ensure_open(&self) -> Result<()> {
    if self.is_closed() {
      return Err(Error::closed());
    }
    if let Some(error) = self.misconfigured.get() {
      return Err(error.clone());
    }
    Ok(())
  }

  /// On first use, checks in the background that no two Redlock hosts are one server reached
  /// under two names (`localhost` and `127.0.0.1`, say), by the run id each server reports:
  /// such a client would count one server's vote twice. From then on, every call is refused.
  /// In the background, so that a host that is down or stalled delays no call.
  pub fn check_hosts_once(&self) {
    if self.hosts.len() < 2
      || self
        .hosts_checked
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
      return;
    }
    let (hosts, misconfigured) = (self.hosts.clone(), self.misconfigured.clone());
    self.guardians.spawn(async move {
      let run_ids = join_all(hosts.iter().map(|host| async move {
        let info: Result<String> = host.query(redis::cmd("INFO").arg("server")).await;
        info.ok().and_then(|info| {
          info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:").map(|id| id.trim().to_owned()))
        })
      }))
      .await;
      for (index, run_id) in run_ids.iter().enumerate() {
        let Some(run_id) = run_id else { continue };
        if let Some(earlier) = run_ids[..index]
          .iter()
          .position(|other| other.as_ref() == Some(run_id))
        {
          let _ = misconfigured.set(Error::invalid_argument(format!(
            "{} and {} are the same Redis server (run id {run_id}); Redlock needs independent hosts",
            hosts[earlier].label(),
            hosts[index].label()
          )));
          return;
        }
      }
    });
  }

  /// Takes `key` for `ttl_ms` with a fresh random token, retrying as `retry` says.
  /// `Ok(None)`: someone else holds it.
  pub async fn lock(&self, key: &str, ttl_ms: u64, retry: &RetryPolicy) -> Result<Option<Lease>> {
    validate::key(key)?;
    let key = &*self.redis_key(key);
    let mut outcome = self.lock_with_retries(key, ttl_ms, retry).await;
    if let (Ok(Some(lease)), true) = (&outcome, self.is_closed()) {
      // Taken while the client closed: nobody will release it, so do it now.
      let _ = self.release_on_quorum(key, &lease.token).await;
      outcome = Err(Error::closed());
    }
    self.count(&outcome, |lease| {
      Some(if lease.is_some() {
        Event::Locked
      } else {
        Event::Busy
      })
    });
    outcome
  }

  async fn lock_with_retries(
    &self,
    key: &str,
    ttl_ms: u64,
    retry: &RetryPolicy,
  ) -> Result<Option<Lease>> {
    let started = Instant::now();
    let budget_end = retry.budget.map(|budget| started + budget);
    let mut attempt = 0;
    loop {
      let outcome = match self.ensure_open() {
        Ok(()) => self.try_lock(key, &new_token(), ttl_ms).await,
        Err(closed) => Err(closed),
      };
      let retryable = match &outcome {
        Ok(Attempt::Taken(lease)) => return Ok(Some(lease.clone())),
        Ok(Attempt::Busy) => true,
        Err(error) => matches!(
          error.kind(),
          ErrorKind::NoQuorum
            | ErrorKind::Connection
            | ErrorKind::Timeout
            | ErrorKind::ValidityExpired
        ),
      };
      let pause = retry.pause();
      let out_of_budget = budget_end.is_some_and(|end| Instant::now() + pause >= end);
      if !retryable || attempt >= retry.count || out_of_budget {
        return outcome.map(|_| None);
      }
      attempt += 1;
      self.options.log(LogLevel::Debug, || {
        let why = match &outcome {
          Ok(_) => "it is held".to_owned(),
          Err(error) => format!("it failed: {error}"),
        };
        format!(
          "lock '{key}': attempt {attempt} of {}: {why}; next in {} ms",
          retry.count + 1,
          pause.as_millis()
        )
      });
      tokio::select! {
        _ = self.closed.cancelled() => return Err(Error::closed()),
        _ = tokio::time::sleep(pause) => {}
      }
    }
  }

  async fn try_lock(&self, key: &str, token: &str, ttl_ms: u64) -> Result<Attempt> {
    self.check_hosts_once();
    let started = Instant::now();
    let shared_key: Arc<str> = Arc::from(key);
    let shared_token: Arc<str> = Arc::from(token);
    let tally = quorum::poll(&self.hosts, |host| {
      let (key, token) = (shared_key.clone(), shared_token.clone());
      async move {
        match host.set_if_absent(&key, &token, ttl_ms).await {
          Ok(true) => Vote::Yes(()),
          Ok(false) => Vote::No(-1),
          Err(error) => Vote::Failed(error),
        }
      }
    })
    .await;
    // Each attempt has its own token, so its undo can run on beside the next attempt.
    let (outcome, _undo) = self.settle(key, token, ttl_ms, started, tally).await;
    outcome.map(|lease| match lease {
      Some(lease) => Attempt::Taken(lease),
      None => Attempt::Busy,
    })
  }

  /// Turns the votes on a fresh lock into a lease, or starts undoing the partial lock on every
  /// host before reporting why there is none. The undo runs in the background, so that a
  /// stalled host delays no answer; it goes to every host, also those that failed or did not
  /// answer in time (their attempt may still have run).
  pub async fn settle<T: Send + 'static>(
    &self,
    key: &str,
    token: &str,
    ttl_ms: u64,
    started: Instant,
    mut tally: Tally<T>,
  ) -> (Result<Option<Lease>>, Undo) {
    let ttl = Duration::from_millis(ttl_ms);
    if tally.has_quorum() {
      if let Some(left) = quorum::validity(ttl, started.elapsed(), self.options.drift_factor) {
        let lease = Lease {
          token: token.to_owned(),
          valid_until: Instant::now() + left,
        };
        let holders: Vec<usize> = tally.yes.iter().map(|(index, _)| *index).collect();
        if self.options.replica_ack.is_some() {
          if let Err(error) = Box::pin(self.confirm_replication(key, token, &holders)).await {
            return (Err(error), Undo::none());
          }
        }
        return (Ok(Some(lease)), Undo::none());
      }
    }
    let pending = std::mem::take(&mut tally.pending);
    let undo = if !tally.yes.is_empty() || !pending.is_empty() || !tally.failed.is_empty() {
      // A lock held on a majority, or a host that failed (it may have run the attempt and hold
      // a lock that others now wait on) wakes waiters when released; a host that said yes to
      // an attempt that got no majority, or answered late, made nobody wait, and waking for it
      // would let waiters of a held lock chase each other.
      let wakes = (0..self.hosts.len())
        .map(|index| {
          if tally.has_quorum() || tally.failed_hosts.contains(&index) {
            Wake::Waiters
          } else {
            Wake::Nobody
          }
        })
        .collect();
      self.undo_per_host(key, token, pending, wakes)
    } else {
      Undo::none()
    };
    if tally.has_quorum() {
      let error = Error::new(
        ErrorKind::ValidityExpired,
        format!(
          "a quorum took '{key}', but after {} ms no time was left on its {ttl_ms} ms ttl; it was released",
          started.elapsed().as_millis()
        ),
      );
      return (Err(error), undo);
    }
    if tally.refused() {
      return (Ok(None), undo);
    }
    (Err(tally.failure()), undo)
  }

  /// Releases `token` on every host in the background, each host once its own attempt (if
  /// still `pending`) has finished, so that the release cannot overtake it.
  pub fn undo<T: Send + 'static>(
    &self,
    key: &str,
    token: &str,
    pending: Vec<(usize, JoinHandle<Vote<T>>)>,
    wake: Wake,
  ) -> Undo {
    self.undo_per_host(key, token, pending, vec![wake; self.hosts.len()])
  }

  /// As [`Client::undo`], with whether to wake waiters said per host.
  fn undo_per_host<T: Send + 'static>(
    &self,
    key: &str,
    token: &str,
    pending: Vec<(usize, JoinHandle<Vote<T>>)>,
    wakes: Vec<Wake>,
  ) -> Undo {
    let release = release_on_every_host(
      self.hosts.clone(),
      LockKeys::new(key),
      token.to_owned(),
      pending,
      wakes,
    );
    Undo(Some(self.guardians.spawn(release)))
  }

  /// Waits until each of the `holders` hosts has copied the new lock to as many replicas as
  /// `replica_ack` asks; on a shortfall, releases the lock and fails, or reports and goes on,
  /// as its policy says.
  pub async fn confirm_replication(&self, key: &str, token: &str, holders: &[usize]) -> Result<()> {
    let Some(ack) = &self.options.replica_ack else {
      return Ok(());
    };
    let answers = join_all(holders.iter().map(|&index| async move {
      let host = &self.hosts[index];
      let mut command = redis::cmd("WAIT");
      command
        .arg(ack.replicas)
        .arg(ack.timeout.as_millis() as u64);
      match host.query::<u64>(&command).await {
        Ok(copies) if copies >= ack.replicas => None,
        Ok(copies) => Some(format!(
          "{}: {copies} of {} replicas acknowledged within {} ms",
          host.label(),
          ack.replicas,
          ack.timeout.as_millis()
        )),
        Err(error) => Some(error.message().to_owned()),
      }
    }))
    .await;
    let shortfalls: Vec<String> = answers.into_iter().flatten().collect();
    if shortfalls.is_empty() {
      return Ok(());
    }
    let error = Error::new(
      ErrorKind::Replication,
      format!(
        "the lock on '{key}' was not copied to enough replicas: {}",
        shortfalls.join("; ")
      ),
    );
    match ack.policy {
      ReplicaPolicy::Fail => {
        self
          .undo::<()>(key, token, Vec::new(), Wake::Waiters)
          .finished()
          .await;
        Err(error)
      }
      ReplicaPolicy::Warn => {
        if let Some(notice) = &self.options.on_notice {
          notice(&error);
        }
        Ok(())
      }
    }
  }

  /// Renews `key` for `ttl_ms` if `token` still holds it on a quorum. `Ok(None)`: not ours.
  pub async fn extend(&self, key: &str, token: &str, ttl_ms: u64) -> Result<Option<Instant>> {
    validate::key(key)?;
    validate::token(token)?;
    self.ensure_open()?;
    self
      .extend_stored(&self.redis_key(key), token, ttl_ms)
      .await
  }

  /// `extend` of a key as stored in Redis (prefixed already).
  pub async fn extend_stored(
    &self,
    key: &str,
    token: &str,
    ttl_ms: u64,
  ) -> Result<Option<Instant>> {
    let started = Instant::now();
    let tally = self
      .ask_each(key, token, |host, key, token| async move {
        host
          .eval::<i64>(&EXTEND, &[&*key], &[&&*token, &ttl_ms])
          .await
      })
      .await;
    let ttl = Duration::from_millis(ttl_ms);
    if tally.has_quorum() {
      return match quorum::validity(ttl, started.elapsed(), self.options.drift_factor) {
        Some(left) => Ok(Some(Instant::now() + left)),
        None => Err(Error::new(
          ErrorKind::ValidityExpired,
          format!("'{key}' was renewed, but no time was left on its {ttl_ms} ms ttl by the time a quorum answered"),
        )),
      };
    }
    if tally.refused() {
      return Ok(None);
    }
    Err(tally.failure())
  }

  /// Releases `key` if `token` holds it, on every host; true when a quorum confirmed.
  pub async fn unlock(&self, key: &str, token: &str) -> Result<bool> {
    validate::key(key)?;
    validate::token(token)?;
    self.ensure_open()?;
    let outcome = self.release_on_quorum(&self.redis_key(key), token).await;
    self.count(&outcome, |released| released.then_some(Event::Unlocked));
    outcome
  }

  /// `unlock` without the closed check: also used to clean up while closing.
  pub async fn release_on_quorum(&self, key: &str, token: &str) -> Result<bool> {
    let tally = self
      .ask_each(key, token, |host, key, token| async move {
        LockKeys::new(&key)
          .release_on(&host, &token, Wake::Waiters)
          .await
      })
      .await;
    if tally.has_quorum() {
      return Ok(true);
    }
    if tally.refused() {
      return Ok(false);
    }
    Err(tally.failure())
  }

  /// Polls every host with a script that answers 1 for "done" and 0 for "not ours".
  async fn ask_each<F, Fut>(&self, key: &str, token: &str, ask: F) -> Tally<()>
  where
    F: Fn(Arc<Host>, Arc<str>, Arc<str>) -> Fut,
    Fut: Future<Output = Result<i64>> + Send + 'static,
  {
    let (key, token): (Arc<str>, Arc<str>) = (Arc::from(key), Arc::from(token));
    quorum::poll(&self.hosts, |host| {
      let answer = ask(host, key.clone(), token.clone());
      async move {
        match answer.await {
          Ok(1) => Vote::Yes(()),
          Ok(_) => Vote::No(-1),
          Err(error) => Vote::Failed(error),
        }
      }
    })
    .await
  }
}

/// The background release of a failed attempt; awaited before another attempt with the same
/// token, so that the release cannot remove what the later attempt takes.
pub struct Undo(Option<JoinHandle<()>>);

impl Undo {
  pub fn none() -> Undo {
    Undo(None)
  }

  pub async fn finished(self) {
    if let Some(release) = self.0 {
      let _ = release.await;
    }
  }
}

async fn release_on_every_host<T>(
  hosts: Vec<Arc<Host>>,
  keys: LockKeys,
  token: String,
  mut pending: Vec<(usize, JoinHandle<Vote<T>>)>,
  wakes: Vec<Wake>,
) {
  join_all(hosts.iter().enumerate().map(|(index, host)| {
    let (keys, token, wake) = (&keys, &token, wakes[index]);
    let attempt = pending
      .iter()
      .position(|(i, _)| *i == index)
      .map(|at| pending.swap_remove(at).1);
    async move {
      if let Some(attempt) = attempt {
        let _ = attempt.await;
      }
      let _ = keys.release_on(host, token, wake).await;
    }
  }))
  .await;
}

/// A fresh random lock token: a uuid v4, from the operating system's CSPRNG.
pub fn new_token() -> String {
  uuid::Uuid::new_v4().to_string()
}

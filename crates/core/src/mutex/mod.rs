//! The mutex: one holder per key. With one host it is the classic single-instance lock
//! (`SET NX PX`, compare-and-delete); with several, Redlock. Owns its keys (`keys`), its
//! scripts, the blocking and fair waits (`acquire`) and the operator calls (`inspect`).

pub mod acquire;
pub mod direct;
pub mod inspect;
pub mod keys;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::task::JoinHandle;

use crate::engine::host::Host;
use crate::engine::quorum::{self, Tally, Vote};
use crate::engine::stats::Event;
use crate::engine::{new_token, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::options::{ClientOptions, LogLevel, ReplicaPolicy, RetryPolicy};
use crate::validate;
use acquire::{FairLines, Gates};
use keys::{LockKeys, Wake, EXTEND};

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

pub struct Mutex {
  engine: Arc<Engine>,
  gates: Gates,
  fair_lines: FairLines,
}

impl Mutex {
  pub fn new(engine: Arc<Engine>) -> Mutex {
    Mutex {
      engine,
      gates: Gates::default(),
      fair_lines: FairLines::default(),
    }
  }

  pub fn engine(&self) -> &Arc<Engine> {
    &self.engine
  }

  /// This process's lines of plain waiters, one per key being waited for.
  pub fn gates(&self) -> &Gates {
    &self.gates
  }

  /// Takes `key` for `ttl_ms` with a fresh random token, retrying as `retry` says.
  /// `Ok(None)`: someone else holds it.
  pub async fn lock(&self, key: &str, ttl_ms: u64, retry: &RetryPolicy) -> Result<Option<Lease>> {
    validate::key(key)?;
    let key = &*self.engine.redis_key(key);
    let mut outcome = self.lock_with_retries(key, ttl_ms, retry).await;
    if let (Ok(Some(lease)), true) = (&outcome, self.engine.is_closed()) {
      // Taken while the client closed: nobody will release it, so do it now.
      let _ = self.release_on_quorum(key, &lease.token).await;
      outcome = Err(Error::closed());
    }
    self.engine.count(&outcome, |lease| {
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
      let outcome = match self.engine.ensure_open() {
        Ok(()) => self.try_lock(key, &new_token(), ttl_ms).await,
        Err(closed) => Err(closed),
      };
      let busy = match &outcome {
        Ok(Attempt::Taken(lease)) => return Ok(Some(lease.clone())),
        Ok(Attempt::Busy) => Ok(()),
        Err(error) => Err(error),
      };
      let Some(pause) = next_try(self.engine.options(), key, busy, retry, attempt, budget_end)
      else {
        return outcome.map(|_| None);
      };
      attempt += 1;
      tokio::select! {
        _ = self.engine.closed_token().cancelled() => return Err(Error::closed()),
        _ = tokio::time::sleep(pause) => {}
      }
    }
  }

  async fn try_lock(&self, key: &str, token: &str, ttl_ms: u64) -> Result<Attempt> {
    self.engine.check_hosts_once();
    let started = Instant::now();
    let shared_key: Arc<str> = Arc::from(key);
    let shared_token: Arc<str> = Arc::from(token);
    let tally = quorum::poll(self.engine.hosts(), |host| {
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
      if let Some(left) =
        quorum::validity(ttl, started.elapsed(), self.engine.options().drift_factor)
      {
        let lease = Lease {
          token: token.to_owned(),
          valid_until: Instant::now() + left,
        };
        let holders: Vec<usize> = tally.yes.iter().map(|(index, _)| *index).collect();
        if self.engine.options().replica_ack.is_some() {
          if let Err(error) = Box::pin(self.confirm_replication(key, token, &holders)).await {
            return (Err(error), Undo::none());
          }
        }
        return (Ok(Some(lease)), Undo::none());
      }
    }
    let pending = std::mem::take(&mut tally.pending);
    let undo = if !tally.yes.is_empty() || !pending.is_empty() || !tally.failed.is_empty() {
      let wakes = undo_wakes(&tally);
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
    self.undo_per_host(key, token, pending, vec![wake; self.engine.hosts().len()])
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
      self.engine.hosts().to_vec(),
      LockKeys::new(key),
      token.to_owned(),
      pending,
      wakes,
    );
    Undo(Some(self.engine.track(release)))
  }

  /// Waits until each of the `holders` hosts has copied the new lock to as many replicas as
  /// `replica_ack` asks; on a shortfall, releases the lock and fails, or reports and goes on,
  /// as its policy says.
  pub async fn confirm_replication(&self, key: &str, token: &str, holders: &[usize]) -> Result<()> {
    let Some(ack) = &self.engine.options().replica_ack else {
      return Ok(());
    };
    let answers = join_all(holders.iter().map(|&index| async move {
      let host = &self.engine.hosts()[index];
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
        if let Some(notice) = &self.engine.options().on_notice {
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
    self.engine.ensure_open()?;
    self
      .extend_stored(&self.engine.redis_key(key), token, ttl_ms)
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
    extend_verdict(
      tally,
      key,
      ttl_ms,
      started,
      self.engine.options().drift_factor,
    )
  }

  /// Releases `key` if `token` holds it, on every host; true when a quorum confirmed.
  pub async fn unlock(&self, key: &str, token: &str) -> Result<bool> {
    validate::key(key)?;
    validate::token(token)?;
    self.engine.ensure_open()?;
    let outcome = self
      .release_on_quorum(&self.engine.redis_key(key), token)
      .await;
    self
      .engine
      .count(&outcome, |released| released.then_some(Event::Unlocked));
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
    release_verdict(tally)
  }

  /// Polls every host with a script that answers 1 for "done" and 0 for "not ours".
  async fn ask_each<F, Fut>(&self, key: &str, token: &str, ask: F) -> Tally<()>
  where
    F: Fn(Arc<Host>, Arc<str>, Arc<str>) -> Fut,
    Fut: Future<Output = Result<i64>> + Send + 'static,
  {
    let (key, token): (Arc<str>, Arc<str>) = (Arc::from(key), Arc::from(token));
    quorum::poll(self.engine.hosts(), |host| {
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

/// Whether a `lock` attempt that found the key held (`Ok`) or failed (`Err`) is tried again
/// under `retry` after `attempt` retries, and after what pause; logged when it is.
pub fn next_try(
  options: &ClientOptions,
  key: &str,
  outcome: std::result::Result<(), &Error>,
  retry: &RetryPolicy,
  attempt: u64,
  budget_end: Option<Instant>,
) -> Option<Duration> {
  let retryable = match outcome {
    Ok(()) => true,
    Err(error) => matches!(
      error.kind(),
      ErrorKind::NoQuorum | ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::ValidityExpired
    ),
  };
  let pause = retry.pause();
  let out_of_budget = budget_end.is_some_and(|end| Instant::now() + pause >= end);
  if !retryable || attempt >= retry.count || out_of_budget {
    return None;
  }
  options.log(LogLevel::Debug, || {
    let why = match outcome {
      Ok(()) => "it is held".to_owned(),
      Err(error) => format!("it failed: {error}"),
    };
    format!(
      "lock '{key}': attempt {} of {}: {why}; next in {} ms",
      attempt + 1,
      retry.count + 1,
      pause.as_millis()
    )
  });
  Some(pause)
}

/// Whether undoing an attempt wakes waiters, per host. A lock held on a majority, or a host
/// that failed (it may have run the attempt and hold a lock that others now wait on) wakes
/// waiters when released; a host that said yes to an attempt that got no majority, or answered
/// late, made nobody wait, and waking for it would let waiters of a held lock chase each other.
pub fn undo_wakes<T>(tally: &Tally<T>) -> Vec<Wake> {
  (0..tally.hosts)
    .map(|index| {
      if tally.has_quorum() || tally.failed_hosts.contains(&index) {
        Wake::Waiters
      } else {
        Wake::Nobody
      }
    })
    .collect()
}

/// A release's answer from the hosts' votes: released on a quorum, not ours, or failed.
pub fn release_verdict<T>(tally: Tally<T>) -> Result<bool> {
  if tally.has_quorum() {
    Ok(true)
  } else if tally.refused() {
    Ok(false)
  } else {
    Err(tally.failure())
  }
}

/// An extend's answer from the hosts' votes: valid until when, not ours (`None`), or failed
/// (also when a quorum renewed it but no time was left by then).
pub fn extend_verdict<T>(
  tally: Tally<T>,
  key: &str,
  ttl_ms: u64,
  started: Instant,
  drift_factor: f64,
) -> Result<Option<Instant>> {
  if tally.has_quorum() {
    return match quorum::validity(Duration::from_millis(ttl_ms), started.elapsed(), drift_factor) {
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

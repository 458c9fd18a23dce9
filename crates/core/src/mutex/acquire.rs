//! Blocking acquire: waiting for a lock until it is free, woken by release notifications, in
//! arrival order within the process, and optionally first come, first served across processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{oneshot, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::keys::{LockKeys, Wake, ACQUIRE, ACQUIRE_FAIR, RAISE_FENCE};
use super::{Mutex, Undo};
use crate::engine::host::ToRedisArgsRef;
use crate::engine::new_token;
use crate::engine::notify::Subscription;
use crate::engine::quorum::{self, Vote};
use crate::engine::stats::Event;
use crate::engine::wait::{is_transient, recheck_after, Stop, Tries};
use crate::engine::watchdog::{Grant, HeldLock, LostCallback, Renewal};
use crate::error::{Error, ErrorKind, Result};
use crate::options::LogLevel;
use crate::validate;

pub use super::keys::FAIR_LIVENESS;

#[derive(Debug, Clone)]
pub struct AcquireOptions {
  pub ttl_ms: u64,
  /// How long to wait; `None` waits until the lock comes, the call is cancelled or the client
  /// closes.
  pub wait: Option<Duration>,
  pub fair: bool,
  pub watchdog: bool,
  pub max_hold: Option<Duration>,
}

impl AcquireOptions {
  /// The lease a lock is taken with: its ttl, but never longer than `max_hold`, so that the
  /// lock cannot outlive its cap in Redis.
  pub fn lease_ms(&self) -> u64 {
    match self.max_hold {
      Some(hold) => self.ttl_ms.min((hold.as_millis() as u64).max(1)),
      None => self.ttl_ms,
    }
  }
}

/// Waiters for the same key in one process line up here, so that only the first of them
/// contends in Redis at a time.
#[derive(Default)]
pub struct Gates {
  by_key: StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A place in a key's local line; leaving it lets the next waiter go, and the last one to
/// leave removes the line.
struct Turn<'a> {
  gates: &'a Gates,
  key: &'a str,
  gate: Option<Arc<tokio::sync::Mutex<()>>>,
  guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
  fn drop(&mut self) {
    let mut by_key = self.gates.by_key.lock().expect("gates lock");
    drop(self.guard.take());
    drop(self.gate.take());
    if by_key
      .get(self.key)
      .is_some_and(|gate| Arc::strong_count(gate) == 1)
    {
      by_key.remove(self.key);
    }
  }
}

impl Gates {
  fn gate(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
    self
      .by_key
      .lock()
      .expect("gates lock")
      .entry(key.to_owned())
      .or_default()
      .clone()
  }

  /// Keys with local waiters; for tests of the clean-up.
  pub fn len(&self) -> usize {
    self.by_key.lock().expect("gates lock").len()
  }

  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }
}

/// Fair waiters of one process join the Redis queue in the order their calls began: each waits
/// for the one before it (on the same key) to have joined before it sends its own request, as
/// concurrent requests could otherwise overtake each other on the way to Redis.
#[derive(Default)]
pub struct FairLines {
  last_joined: StdMutex<HashMap<String, (u64, oneshot::Receiver<()>)>>,
  next_place: std::sync::atomic::AtomicU64,
}

struct Place {
  id: u64,
  predecessor: Option<oneshot::Receiver<()>>,
  joined: Option<oneshot::Sender<()>>,
}

impl FairLines {
  fn take_place(&self, key: &str) -> Place {
    let id = self
      .next_place
      .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (joined, joined_signal) = oneshot::channel();
    let predecessor = self
      .last_joined
      .lock()
      .expect("fair lines lock")
      .insert(key.to_owned(), (id, joined_signal))
      .map(|(_, signal)| signal);
    Place {
      id,
      predecessor,
      joined: Some(joined),
    }
  }

  /// Lets the next waiter go (also when this one gave up before joining).
  fn joined(&self, key: &str, place: &mut Place) {
    drop(place.joined.take());
    let mut last = self.last_joined.lock().expect("fair lines lock");
    if last.get(key).is_some_and(|(id, _)| *id == place.id) {
      last.remove(key);
    }
  }
}

enum Try {
  Taken(Grant),
  /// Held by another; when to look again at the latest.
  Busy(Duration),
}

/// One attempt's outcome, the undo of what it left, and whether any host answered it (as
/// opposed to every host failing).
struct Attempted {
  outcome: Result<Try>,
  undo: Undo,
  answered: bool,
}

/// What a wait that ended without the lock may have left in Redis: an attempt still in flight,
/// whose answer was not awaited. (A failed attempt's own undo removes what it may have taken.)
#[derive(Default)]
struct Leftovers {
  attempt: Option<JoinHandle<Attempted>>,
}

impl Mutex {
  /// Waits until `key` is acquired for this caller, then hands it to a guardian task that
  /// renews it (with the watchdog on) and reports its loss through `on_lost`.
  pub async fn acquire(
    self: &Arc<Self>,
    key: &str,
    options: AcquireOptions,
    cancel: CancellationToken,
    on_lost: LostCallback,
  ) -> Result<Arc<HeldLock>> {
    self.begin_acquire(key, options, cancel, on_lost).await
  }

  /// As [`Client::acquire`], split at the moment the call begins: the checks and the place
  /// among this process's fair waiters are taken now, the waiting happens in the returned
  /// future.
  pub fn begin_acquire(
    self: &Arc<Self>,
    key: &str,
    options: AcquireOptions,
    cancel: CancellationToken,
    on_lost: LostCallback,
  ) -> impl std::future::Future<Output = Result<Arc<HeldLock>>> + Send + 'static {
    let client = self.clone();
    let name = key.to_owned();
    let key = client.engine.redis_key(key).into_owned();
    let checked = validate::key(&name).and_then(|()| {
      if client.engine.is_closed() {
        return Err(Error::closed());
      }
      if options.fair && client.engine.hosts().len() > 1 {
        return Err(Error::new(
          ErrorKind::Unsupported,
          "fair: true needs a single Redis host; over several hosts (Redlock) no single queue can order waiters",
        ));
      }
      Ok(options.fair.then(|| client.fair_lines.take_place(&key)))
    });
    async move {
      let place = checked?;
      let started = Instant::now();
      let stop = Stop {
        key: &name,
        cancel,
        closed: client.engine.closed_token().clone(),
        started,
        deadline: options.wait.map(|wait| started + wait),
      };
      let keys = LockKeys::new(&key);
      let token = new_token();
      let mut leftovers = Leftovers::default();
      let outcome = match place {
        Some(place) => {
          client
            .wait_fairly(&keys, &token, &options, &stop, place)
            .await
        }
        None => {
          client
            .wait_in_line(&keys, &token, &options, &stop, &mut leftovers)
            .await
        }
      };
      match &outcome {
        // A single try (`waitTimeout: 0`) that found the lock held is a busy answer, as `lock`'s.
        Err(error)
          if error.kind() == ErrorKind::WaitTimeout
            && options.wait == Some(Duration::ZERO)
            && error.cause().is_none() =>
        {
          client.engine.stats().record(Event::Busy)
        }
        _ => client.engine.count(&outcome, |_| Some(Event::Acquired)),
      }
      match outcome {
        Ok(grant) => {
          let hold = Box::new(MutexHold {
            mutex: client.clone(),
            key,
            token: grant.token.clone(),
          });
          Ok(HeldLock::start(
            client.engine.clone(),
            hold,
            grant,
            name,
            on_lost,
          ))
        }
        Err(error) => {
          if options.fair || leftovers.attempt.is_some() {
            // Leave the fair queue (and pass the lock on if a release handed it to us
            // meanwhile), or remove what an unanswered attempt may have taken. In the
            // background: a stalled host must not hold up the error.
            client.clone().clean_up_after_wait(keys, token, leftovers);
          }
          Err(error)
        }
      }
    }
  }

  fn clean_up_after_wait(self: Arc<Self>, keys: LockKeys, token: String, leftovers: Leftovers) {
    let client = self.clone();
    self.engine.track(async move {
      if let Some(attempt) = leftovers.attempt {
        if let Ok(attempted) = attempt.await {
          attempted.undo.finished().await;
        }
      }
      let _ = client.release_on_quorum(&keys.lock, &token).await;
    });
  }

  async fn wait_in_line(
    self: &Arc<Self>,
    keys: &LockKeys,
    token: &str,
    options: &AcquireOptions,
    stop: &Stop<'_>,
    leftovers: &mut Leftovers,
  ) -> Result<Grant> {
    let gate = self.gates.gate(&keys.lock);
    let mut turn = Turn {
      gates: &self.gates,
      key: &keys.lock,
      gate: Some(gate.clone()),
      guard: None,
    };
    turn.guard = Some(stop.until(gate.lock_owned(), None).await?);
    // Subscribed only once the lock turns out to be held, so an uncontended acquire costs one
    // round trip; the attempt right after subscribing catches a release in between.
    let mut subscription = None;
    let mut last_failure = None;
    let mut tries = Tries::new(options.wait == Some(Duration::ZERO));
    loop {
      tries.check(stop, last_failure.as_ref())?;
      // The attempt runs as its own task, so that an abort or the end of the wait does not have
      // to wait for a stalled host; whatever it leaves is cleaned up after the wait.
      let client = self.clone();
      let (attempt_keys, attempt_token, attempt_options) =
        (keys.clone(), token.to_owned(), options.clone());
      let attempt = leftovers.attempt.insert(tokio::spawn(async move {
        client
          .try_acquire(&attempt_keys, &attempt_token, &attempt_options)
          .await
      }));
      let Attempted {
        outcome,
        undo,
        answered: answered_now,
      } = match tries.run(stop, attempt, last_failure.as_ref()).await? {
        Ok(attempted) => attempted,
        Err(panicked) => Attempted {
          outcome: Err(Error::new(
            ErrorKind::Internal,
            format!("an attempt on '{}' failed: {panicked}", keys.lock),
          )),
          undo: Undo::none(),
          answered: false,
        },
      };
      leftovers.attempt = None;
      let unreachable = tries.unreachable(answered_now, &outcome);
      let recheck = match outcome {
        Ok(Try::Taken(grant)) => return Ok(grant),
        Err(error) if unreachable => return Err(error),
        Ok(Try::Busy(_)) if subscription.is_none() => {
          // No wait left: give up without subscribing.
          stop.check(None)?;
          stop.until(undo.finished(), last_failure.as_ref()).await?;
          subscription = Some(self.subscribe_within_bound(&keys.channel, stop).await?);
          continue;
        }
        Ok(Try::Busy(recheck)) => recheck,
        Err(error) if is_transient(&error) => {
          self.engine.options().log(LogLevel::Warn, || {
            format!(
              "waiting for '{}': an attempt failed, retrying: {error}",
              stop.key
            )
          });
          last_failure = Some(error);
          self.engine.options().retry.pause()
        }
        Err(error) => return Err(error),
      };
      // The undo of this attempt releases our token: it must be done before the next attempt,
      // which uses the same token, can take anything.
      stop
        .until(
          async {
            undo.finished().await;
            released_or(subscription.as_mut(), recheck, token).await
          },
          last_failure.as_ref(),
        )
        .await?;
    }
  }

  /// Subscribes to release messages, waiting at most `commandTimeout` for the hosts to
  /// confirm: a stalled host must not delay the wait, and its messages are only a shortcut
  /// (waiters re-check on a timer as well).
  async fn subscribe_within_bound(&self, channel: &str, stop: &Stop<'_>) -> Result<Subscription> {
    let bound = self.engine.options().command_timeout;
    stop
      .until(self.engine.notifications().subscribe(channel, bound), None)
      .await
  }

  /// One attempt over all hosts with the fencing script.
  async fn try_acquire(&self, keys: &LockKeys, token: &str, options: &AcquireOptions) -> Attempted {
    self.engine.check_hosts_once();
    if let Err(error) = self.engine.ensure_open() {
      return Attempted {
        outcome: Err(error),
        undo: Undo::none(),
        answered: false,
      };
    }
    let started = Instant::now();
    let lease_ms = options.lease_ms();
    let (lock, fence): (Arc<str>, Arc<str>) = (
      Arc::from(keys.lock.as_str()),
      Arc::from(keys.fence.as_str()),
    );
    let shared_token: Arc<str> = Arc::from(token);
    let tally = quorum::poll(self.engine.hosts(), |host| {
      let (lock, fence, token) = (lock.clone(), fence.clone(), shared_token.clone());
      async move {
        match host
          .eval::<Vec<i64>>(&ACQUIRE, &[&lock, &fence], &[&&*token, &lease_ms])
          .await
        {
          Ok(reply) if reply.first() == Some(&1) => Vote::Yes(reply.get(1).copied().unwrap_or(0)),
          Ok(reply) => Vote::No(reply.get(1).copied().unwrap_or(-1)),
          Err(error) => Vote::Failed(error),
        }
      }
    })
    .await;
    let fences: Vec<(usize, i64)> = tally.yes.clone();
    let holder_ttl = tally.holder_ttl_ms;
    let answered = !tally.yes.is_empty() || tally.no > 0;
    let (settled, undo) = self
      .settle(&keys.lock, token, lease_ms, started, tally)
      .await;
    let attempted = |outcome, undo| Attempted {
      outcome,
      undo,
      answered,
    };
    let lease = match settled {
      Ok(Some(lease)) => lease,
      Ok(None) => return attempted(Ok(Try::Busy(recheck_after(holder_ttl))), undo),
      Err(error) => return attempted(Err(error), undo),
    };
    match self.agree_on_fence(keys, &fences).await {
      Ok(fence) => attempted(
        Ok(Try::Taken(Grant {
          token: lease.token,
          fence,
          parts: Vec::new(),
          ttl_ms: options.ttl_ms,
          valid_until: lease.valid_until,
          watchdog: options.watchdog,
          max_hold: options.max_hold,
        })),
        undo,
      ),
      Err(error) => {
        let undo = self.undo::<()>(&keys.lock, token, Vec::new(), Wake::Waiters);
        attempted(Err(error), undo)
      }
    }
  }

  /// The fencing number of a lock taken on several hosts: the highest one any of them gave.
  /// It counts only once a majority of hosts holds at least that number (the hosts that gave
  /// less, and the others, are raised to it): the next holder's majority then shares a host
  /// with this one and counts on from it, whichever hosts answer then.
  async fn agree_on_fence(&self, keys: &LockKeys, fences: &[(usize, i64)]) -> Result<i64> {
    let highest = fences.iter().map(|(_, fence)| *fence).max().unwrap_or(0);
    let hosts = self.engine.hosts();
    let needed = quorum::quorum_of(hosts.len());
    let mut holding = fences.iter().filter(|(_, fence)| *fence == highest).count();
    if holding >= needed {
      return Ok(highest);
    }
    let fence_key: Arc<str> = Arc::from(keys.fence.as_str());
    let mut raises: FuturesUnordered<_> = (0..hosts.len())
      .filter(|index| {
        !fences
          .iter()
          .any(|(i, fence)| i == index && *fence == highest)
      })
      .map(|index| {
        let (host, fence_key) = (hosts[index].clone(), fence_key.clone());
        tokio::spawn(async move {
          host
            .eval::<i64>(&RAISE_FENCE, &[&fence_key], &[&highest])
            .await
        })
      })
      .collect();
    let mut failures = Vec::new();
    while let Some(raised) = raises.next().await {
      match raised {
        Ok(Ok(value)) if value >= highest => holding += 1,
        Ok(Ok(value)) => failures.push(format!("a host answered {value}")),
        Ok(Err(error)) => failures.push(error.to_string()),
        Err(panicked) => failures.push(panicked.to_string()),
      }
      if holding >= needed {
        return Ok(highest);
      }
    }
    Err(Error::new(
      ErrorKind::NoQuorum,
      format!(
        "the fencing number {highest} of '{}' could be recorded on {holding} of {} hosts, {needed} needed; the lock was released. Failures: {}",
        keys.lock,
        hosts.len(),
        failures.join("; ")
      ),
    ))
  }

  async fn wait_fairly(
    &self,
    keys: &LockKeys,
    token: &str,
    options: &AcquireOptions,
    stop: &Stop<'_>,
    mut place: Place,
  ) -> Result<Grant> {
    let host = self.engine.hosts()[0].clone();
    let mut subscription = None;
    if let Some(predecessor) = place.predecessor.take() {
      let waited = stop.until(predecessor, None).await;
      if waited.is_err() {
        self.fair_lines.joined(&keys.lock, &mut place);
      }
      let _joined_or_gave_up = waited?;
    }
    let liveness_ms = FAIR_LIVENESS.as_millis() as u64;
    let heartbeat = FAIR_LIVENESS / 3;
    let lease_ms = options.lease_ms();
    let lease = Duration::from_millis(lease_ms);
    // A release hands the lock over with at most the liveness window as its lease.
    let handed_over_lease = lease.min(FAIR_LIVENESS);
    let drift = lease.mul_f64(self.engine.options().drift_factor) + Duration::from_millis(2);
    let mut last_failure = None;
    let mut tries = Tries::new(options.wait == Some(Duration::ZERO));
    loop {
      tries.check(stop, last_failure.as_ref())?;
      // Any hand-over to us happens after this request ran, so a lease counted from here is on
      // the safe side.
      let sent = Instant::now();
      let all_keys = keys.all();
      let args: [&dyn ToRedisArgsRef; 3] = [&token, &lease_ms, &liveness_ms];
      let request = host.eval::<Vec<i64>>(&ACQUIRE_FAIR, &all_keys, &args);
      // An abort does not wait for the answer; leaving the queue afterwards goes out on the
      // same connection, after this request.
      let reply = tries.run(stop, request, last_failure.as_ref()).await?;
      let unreachable = tries.unreachable(reply.is_ok(), &reply);
      if place.joined.is_some() {
        self.fair_lines.joined(&keys.lock, &mut place);
      }
      let recheck = match reply {
        Ok(reply) if reply.first() == Some(&1) => {
          let (fence, remaining_ms) = (
            reply.get(1).copied().unwrap_or(0),
            reply.get(2).copied().unwrap_or(0),
          );
          match Duration::from_millis(remaining_ms.max(0) as u64).checked_sub(drift) {
            Some(left) if !left.is_zero() => {
              return self
                .fair_grant(keys, token, options, fence, sent + left)
                .await
            }
            _ => {
              // Handed over with no time left: give it up and queue again.
              let _ = self.release_on_quorum(&keys.lock, token).await;
              Duration::ZERO
            }
          }
        }
        Ok(_) if subscription.is_none() => {
          // Waiting after all: from now on releases are heard; ask again at once in case one
          // came before the subscription did. With no wait left, give up first.
          stop.check(None)?;
          subscription = Some(self.subscribe_within_bound(&keys.channel, stop).await?);
          continue;
        }
        Ok(reply) => recheck_after(reply.get(1).copied().filter(|ttl| *ttl >= 0)).min(heartbeat),
        Err(error) if unreachable => return Err(error),
        Err(error) if is_transient(&error) => {
          self.engine.options().log(LogLevel::Warn, || {
            format!(
              "waiting for '{}': an attempt failed, retrying: {error}",
              stop.key
            )
          });
          last_failure = Some(error);
          self.engine.options().retry.pause().min(heartbeat)
        }
        Err(error) => return Err(error),
      };
      let woken = stop
        .until(
          released_or(subscription.as_mut(), recheck, token),
          last_failure.as_ref(),
        )
        .await?;
      if let Some(fence) = woken.handed_over_fence {
        // The release that handed us the lock said so, with our fence: no need to ask again
        // if enough of the handed-over lease is certain and the watchdog will make it the full
        // lease; otherwise the next request takes over the full lease at once.
        let valid_until = sent + handed_over_lease.saturating_sub(drift);
        let certain = valid_until.saturating_duration_since(Instant::now());
        let full_lease_follows = handed_over_lease == lease || options.watchdog;
        if full_lease_follows && certain >= handed_over_lease / 2 {
          return self
            .fair_grant(keys, token, options, fence, valid_until)
            .await;
        }
      }
    }
  }

  async fn fair_grant(
    &self,
    keys: &LockKeys,
    token: &str,
    options: &AcquireOptions,
    fence: i64,
    mut valid_until: Instant,
  ) -> Result<Grant> {
    if self.engine.options().replica_ack.is_some() {
      // The hand-over was written by the releasing client; WAIT covers only this client's own
      // writes, so renew first (a write of ours that replicates after the hand-over).
      match self
        .extend_stored(&keys.lock, token, options.lease_ms())
        .await?
      {
        Some(renewed) => valid_until = renewed,
        None => {
          return Err(Error::new(
            ErrorKind::LockLost,
            format!("'{}' was lost right after it was handed over", keys.lock),
          ))
        }
      }
      self.confirm_replication(&keys.lock, token, &[0]).await?;
    }
    Ok(Grant {
      token: token.to_owned(),
      fence,
      parts: Vec::new(),
      ttl_ms: options.ttl_ms,
      valid_until,
      watchdog: options.watchdog,
      max_hold: options.max_hold,
    })
  }
}

/// What ended a wait for a release.
struct Woken {
  /// The fence, when a release handed the lock to this waiter and said so.
  handed_over_fence: Option<i64>,
}

/// Waits until a release of the lock is announced (free, or handed to `token`) or `recheck`
/// has passed, whichever comes first. A release message is empty when the lock became free, or
/// "<new holder's token> <fence>" when a fair waiter was handed the lock.
async fn released_or(
  subscription: Option<&mut Subscription>,
  recheck: Duration,
  token: &str,
) -> Woken {
  let timer = tokio::time::sleep(recheck);
  tokio::pin!(timer);
  let nothing = Woken {
    handed_over_fence: None,
  };
  let Some(subscription) = subscription else {
    timer.await;
    return nothing;
  };
  loop {
    tokio::select! {
      _ = &mut timer => return nothing,
      message = subscription.receiver.recv() => match message {
        Ok(message) if message.is_empty() => return nothing,
        Ok(message) => {
          let mut words = message.split(' ');
          if words.next() == Some(token) {
            return Woken { handed_over_fence: words.next().and_then(|fence| fence.parse().ok()) };
          }
        }
        Err(RecvError::Lagged(_)) => return nothing,
        Err(RecvError::Closed) => {
          (&mut timer).await;
          return nothing;
        }
      },
    }
  }
}

/// A mutex lock held through a handle, as the watchdog renews and releases it.
pub(super) struct MutexHold {
  pub(super) mutex: Arc<Mutex>,
  /// The key as stored in Redis (with the client's prefix).
  pub(super) key: String,
  pub(super) token: String,
}

impl Renewal for MutexHold {
  fn renew(&self, ttl_ms: u64) -> BoxFuture<'_, Result<Option<Instant>>> {
    Box::pin(self.mutex.extend_stored(&self.key, &self.token, ttl_ms))
  }

  fn release(&self) -> BoxFuture<'_, Result<bool>> {
    Box::pin(self.mutex.release_on_quorum(&self.key, &self.token))
  }

  fn as_any(&self) -> &dyn std::any::Any {
    self
  }
}

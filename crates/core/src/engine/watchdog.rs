//! A hold kept through a handle, for any primitive: its lease, the watchdog that renews it,
//! and the loud report when it is lost. A primitive plugs in through [`Renewal`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::quorum;
use super::stats::Event;
use super::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::options::LogLevel;

/// Called once, from a tokio thread, when a held lock is lost (not when `close` ends it).
pub type LostCallback = Box<dyn Fn(&Error) + Send + Sync>;

/// What the watchdog needs of a primitive to keep one of its holds.
pub trait Renewal: Send + Sync + 'static {
  /// Renews the hold for `ttl_ms` from now. `Ok(Some(until))`: renewed on a quorum, safe to
  /// rely on until then; `Ok(None)`: no longer held.
  fn renew(&self, ttl_ms: u64) -> BoxFuture<'_, Result<Option<Instant>>>;
  /// Releases the hold. `Ok(true)`: released on a quorum; `Ok(false)`: it was not held.
  fn release(&self) -> BoxFuture<'_, Result<bool>>;
  /// The primitive's own hold, for calls only it offers (a read-write lock's downgrade).
  fn as_any(&self) -> &dyn std::any::Any;
  /// Whether `release_call` gives the release (a property of the hold that never changes).
  fn has_release_call(&self) -> bool {
    false
  }
  /// The release as one script call on the primitive's single host, for the event-loop path;
  /// `None` when the release takes more than that. Asked for once the release has begun, when
  /// the hold can no longer change (a read-write hold's mode).
  fn release_call(&self) -> Option<super::script::ReleaseCall> {
    None
  }
}

/// How a release goes on after its first, synchronous part.
pub enum Release {
  Answered(Result<bool>),
  /// Send the release to the hosts; then answer as this says.
  Send(AfterRelease),
}

pub enum AfterRelease {
  /// Answer with what the hosts said.
  Answer,
  /// The lease had run out: report its loss, whatever the hosts say.
  Report(Error),
}

/// Renewal starts this long after the previous one, as a share of the ttl.
const RENEW_EVERY: f64 = 1.0 / 3.0;
/// After a failed renewal, the next try comes this soon (or sooner if the lease runs out).
const RETRY_RENEWAL_AFTER: Duration = Duration::from_millis(100);
/// A renewal up to `maxHold` is made only if it lengthens the lease by more than this.
const MIN_RENEWAL_GAIN: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
  Held,
  Released,
  Lost,
}

struct State {
  phase: Phase,
  valid_until: Instant,
  ttl_ms: u64,
  lost: Option<Error>,
  /// Why the last renewal failed, while no renewal has succeeded since.
  renewal_failure: Option<Error>,
}

pub struct HeldLock {
  engine: Arc<Engine>,
  hold: Box<dyn Renewal>,
  /// The key as the caller named it.
  name: String,
  token: String,
  /// Changes only when a read hold becomes a write hold (upgrade).
  fence: AtomicI64,
  /// A multi-key lock's keys (as the caller named them) with their fences; empty for one key.
  parts: Vec<(String, i64)>,
  watchdog: bool,
  hold_until: Option<Instant>,
  state: Mutex<State>,
  changed: Notify,
  released: CancellationToken,
  /// Whether the guardian task runs; until it must, the hold waits on the engine's watchlist.
  guarded: AtomicBool,
  /// The hold's place on the watchlist.
  watched: (Instant, u64),
  /// Taken when the lock ends (released or lost): the callback may hold a JavaScript function
  /// that refers back to this lock's handle, and holding it longer would keep both alive.
  on_lost: Mutex<Option<LostCallback>>,
}

impl std::fmt::Debug for HeldLock {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("HeldLock")
      .field("key", &self.name)
      .field("fence", &self.fence())
      .field("valid", &self.is_valid())
      .finish()
  }
}

pub struct Grant {
  pub token: String,
  pub fence: i64,
  /// A multi-key lock's keys with their fences; empty for one key.
  pub parts: Vec<(String, i64)>,
  pub ttl_ms: u64,
  pub valid_until: Instant,
  pub watchdog: bool,
  pub max_hold: Option<Duration>,
}

impl HeldLock {
  /// Wraps a freshly taken lock and starts its guardian task (the watchdog when enabled; in
  /// any case the task that reports expiry and ends the lock at `close`).
  pub fn start(
    engine: Arc<Engine>,
    hold: Box<dyn Renewal>,
    grant: Grant,
    name: String,
    on_lost: LostCallback,
  ) -> Arc<HeldLock> {
    // maxHold counts from the grant; the lease was taken no longer than maxHold (see
    // `AcquireOptions::lease_ms`), so it cannot outlast the cap either.
    let acquired_at = Instant::now();
    let watchlist = engine.watchlist();
    let watched = (
      first_step(&grant, acquired_at),
      watchlist.next_place.fetch_add(1, Ordering::Relaxed),
    );
    let held = Arc::new(HeldLock {
      name,
      hold,
      token: grant.token,
      fence: AtomicI64::new(grant.fence),
      parts: grant.parts,
      watchdog: grant.watchdog,
      hold_until: grant.max_hold.map(|hold| acquired_at + hold),
      state: Mutex::new(State {
        phase: Phase::Held,
        valid_until: grant.valid_until,
        ttl_ms: grant.ttl_ms,
        lost: None,
        renewal_failure: None,
      }),
      changed: Notify::new(),
      released: CancellationToken::new(),
      guarded: AtomicBool::new(false),
      watched,
      on_lost: Mutex::new(Some(on_lost)),
      engine: engine.clone(),
    });
    watchlist.watch(&engine, held.clone());
    held
  }

  /// Starts the guardian task now, if it does not run yet.
  fn guard_now(self: &Arc<Self>) {
    if !self.guarded.swap(true, Ordering::AcqRel) {
      self.engine.watchlist().forget(self.watched);
      self.engine.track(guard(self.clone()));
    }
  }

  /// The key as the caller named it.
  pub fn key(&self) -> &str {
    &self.name
  }

  pub fn token(&self) -> &str {
    &self.token
  }

  pub fn fence(&self) -> i64 {
    self.fence.load(Ordering::Acquire)
  }

  pub(crate) fn set_fence(&self, fence: i64) {
    self.fence.store(fence, Ordering::Release)
  }

  /// The lease each renewal asks for.
  pub fn ttl_ms(&self) -> u64 {
    self.state.lock().expect("held lock state").ttl_ms
  }

  /// A multi-key lock's keys with their fences; empty for one key.
  pub fn parts(&self) -> &[(String, i64)] {
    &self.parts
  }

  /// The primitive's own hold behind this lock.
  pub fn renewal(&self) -> &dyn Renewal {
    &*self.hold
  }

  /// True while the lock is held and its lease has not run out, by the monotonic clock; no
  /// Redis round trip.
  pub fn is_valid(&self) -> bool {
    let state = self.state.lock().expect("lock state");
    state.phase == Phase::Held && Instant::now() < state.valid_until
  }

  /// Time left on the lease (zero once lost, released or expired).
  pub fn remaining(&self) -> Duration {
    let state = self.state.lock().expect("lock state");
    match state.phase {
      Phase::Held => state.valid_until.saturating_duration_since(Instant::now()),
      _ => Duration::ZERO,
    }
  }

  /// Why the lock was lost, once it is.
  pub fn lost_reason(&self) -> Option<Error> {
    self.state.lock().expect("lock state").lost.clone()
  }

  /// Renews the lease to `ttl_ms` now; later watchdog renewals use the new ttl too.
  /// Never past `maxHold`: the new lease is cut to what is left of it.
  pub async fn extend(self: &Arc<Self>, ttl_ms: u64) -> Result<()> {
    self.ensure_held()?;
    // The lease may get shorter than the watchlist expects: the guardian watches it from now.
    self.guard_now();
    let lease_ms = match self.hold_until {
      Some(until) => {
        let left = until.saturating_duration_since(Instant::now()).as_millis() as u64;
        if left == 0 {
          return Err(Error::new(
            ErrorKind::LockLost,
            format!("the lock on '{}' reached its maxHold", self.name),
          ));
        }
        ttl_ms.min(left)
      }
      None => ttl_ms,
    };
    self.expect_lease_of_at_most(lease_ms);
    match self.hold.renew(lease_ms).await {
      Ok(Some(valid_until)) => {
        let mut state = self.state.lock().expect("lock state");
        if state.phase == Phase::Held {
          state.valid_until = valid_until;
          state.ttl_ms = ttl_ms;
        }
        drop(state);
        self.changed.notify_one();
        Ok(())
      }
      Ok(None) => Err(self.lose(self.not_held_error())),
      Err(error) => Err(error),
    }
  }

  /// About to ask Redis for a lease of `lease_ms` from now: whether or not the answer comes,
  /// the key may expire that soon, so the lease known here must end no later.
  fn expect_lease_of_at_most(&self, lease_ms: u64) {
    let certain = quorum::validity(
      Duration::from_millis(lease_ms),
      Duration::ZERO,
      self.engine.options().drift_factor,
    );
    let mut state = self.state.lock().expect("lock state");
    let end = Instant::now() + certain.unwrap_or(Duration::ZERO);
    if end < state.valid_until {
      state.valid_until = end;
    }
  }

  /// Releases the lock. `Ok(true)`: released now; `Ok(false)`: it had been released before.
  /// A lost lock is reported as [`ErrorKind::LockLost`] (once; later calls answer `Ok(false)`).
  pub async fn release(&self) -> Result<bool> {
    match self.begin_release() {
      Release::Answered(answer) => answer,
      Release::Send(after) => {
        let released = self.hold.release().await;
        self.finish_release(after, released)
      }
    }
  }

  /// The part of [`HeldLock::release`] before the request: either the answer, or the
  /// request to send (the caller sends the release of this hold's key and token, then calls
  /// [`HeldLock::finish_release`] with what the hosts answered).
  pub fn begin_release(&self) -> Release {
    if !self.is_valid() && self.state.lock().expect("lock state").phase == Phase::Held {
      // The lease ran out and the guardian has not said so yet: say it now, so that the loss
      // is reported (signal, onLost) before the release answers, as it would have been a moment
      // later. The key is still released in case it is ours.
      let reason = self.lose(self.ran_out_error());
      self.state.lock().expect("lock state").phase = Phase::Released;
      return Release::Send(AfterRelease::Report(reason));
    }
    {
      let mut state = self.state.lock().expect("lock state");
      match state.phase {
        Phase::Released => return Release::Answered(Ok(false)),
        Phase::Lost => {
          state.phase = Phase::Released;
          let reason = state.lost.clone().expect("a lost lock has a reason");
          // Lost by this client's reckoning (a renewal whose answer never came, say) while a
          // host may still keep the key under our token, renewed by a request that did arrive:
          // release it all the same. The release touches the key only where it holds our token.
          return match self.engine.ensure_open() {
            Ok(()) => Release::Send(AfterRelease::Report(reason)),
            Err(_) => Release::Answered(Err(reason)),
          };
        }
        Phase::Held => state.phase = Phase::Released,
      }
    }
    self.engine.watchlist().forget(self.watched);
    self.released.cancel();
    drop(self.on_lost.lock().expect("lost callback").take());
    match self.engine.ensure_open() {
      Ok(()) => Release::Send(AfterRelease::Answer),
      Err(closed) => Release::Answered(Err(closed)),
    }
  }

  pub fn finish_release(&self, after: AfterRelease, released: Result<bool>) -> Result<bool> {
    match (after, released) {
      (AfterRelease::Report(reason), _) => Err(reason),
      (AfterRelease::Answer, Ok(true)) => {
        self.engine.stats().record(Event::Released);
        Ok(true)
      }
      (AfterRelease::Answer, Ok(false)) => Err(self.not_held_error()),
      (AfterRelease::Answer, Err(error)) => Err(error),
    }
  }

  /// Fails with [`ErrorKind::LockLost`] once the hold was released or lost.
  pub fn ensure_held(&self) -> Result<()> {
    let state = self.state.lock().expect("lock state");
    match state.phase {
      Phase::Held => Ok(()),
      Phase::Released => Err(Error::new(
        ErrorKind::LockLost,
        format!("the lock on '{}' was already released", self.name),
      )),
      Phase::Lost => Err(state.lost.clone().expect("a lost lock has a reason")),
    }
  }

  fn not_held_error(&self) -> Error {
    Error::new(
      ErrorKind::LockLost,
      format!(
        "the lock on '{}' is no longer held: it expired or was taken over",
        self.name
      ),
    )
  }

  /// Marks the lock lost (once) and tells the owner; returns the reason.
  fn lose(&self, reason: Error) -> Error {
    let mut state = self.state.lock().expect("lock state");
    if state.phase != Phase::Held {
      return state.lost.clone().unwrap_or(reason);
    }
    state.phase = Phase::Lost;
    state.lost = Some(reason.clone());
    drop(state);
    self.engine.watchlist().forget(self.watched);
    self.released.cancel();
    let on_lost = self.on_lost.lock().expect("lost callback").take();
    if reason.kind() == ErrorKind::Closed {
      // Closing is not losing: the owner asked for it, and learns it from `close()` itself.
      self.engine.stats().record(Event::Closed);
    } else {
      self.engine.stats().record(Event::Lost);
      self
        .engine
        .options()
        .log(LogLevel::Error, || reason.message().to_owned());
      if let Some(on_lost) = on_lost {
        on_lost(&reason);
      }
    }
    reason
  }

  /// When the guardian should next act, and whether that is a renewal.
  fn next_step(&self) -> Option<(Instant, bool)> {
    let state = self.state.lock().expect("lock state");
    if state.phase != Phase::Held {
      return None;
    }
    let now = Instant::now();
    let renewal_due = state
      .valid_until
      .checked_sub(Duration::from_millis(state.ttl_ms).mul_f64(1.0 - RENEW_EVERY));
    let may_renew =
      self.watchdog && !self.capped_by_max_hold(state.valid_until) && now < state.valid_until;
    match renewal_due {
      Some(due) if may_renew => Some((due.min(state.valid_until), true)),
      _ if may_renew => Some((now, true)),
      _ => Some((state.valid_until, false)),
    }
  }

  /// True when `maxHold` ends no later than the current lease: renewing could only shorten it.
  fn capped_by_max_hold(&self, valid_until: Instant) -> bool {
    self
      .hold_until
      .is_some_and(|until| until <= valid_until + MIN_RENEWAL_GAIN)
  }

  /// Renews the lease: for the ttl, or up to `maxHold` if that comes first (which is past the
  /// current lease: see `next_step`). The lease known here never ends later than the one in
  /// Redis, also when the answer is lost: only a confirmed renewal moves it.
  async fn renew(&self) -> std::result::Result<(), Error> {
    let ttl_ms = {
      let state = self.state.lock().expect("lock state");
      match self.hold_until {
        Some(until) => state
          .ttl_ms
          .min(until.saturating_duration_since(Instant::now()).as_millis() as u64)
          .max(1),
        None => state.ttl_ms,
      }
    };
    self.expect_lease_of_at_most(ttl_ms);
    match self.hold.renew(ttl_ms).await {
      Ok(Some(valid_until)) => {
        let mut state = self.state.lock().expect("lock state");
        if Instant::now() >= state.valid_until {
          // The lease ran out before the answer came: `isValid()` has answered false, and a
          // lock is never valid again once it was not.
          drop(state);
          return Err(Error::new(
            ErrorKind::LockLost,
            format!(
              "the lock on '{}' ran out before its renewal was answered",
              self.name
            ),
          ));
        }
        if state.phase == Phase::Held && valid_until > state.valid_until {
          state.valid_until = valid_until;
        }
        state.renewal_failure = None;
        self.engine.stats().record(Event::Renewed);
        Ok(())
      }
      Ok(None) => Err(self.not_held_error()),
      Err(error) => {
        let mut state = self.state.lock().expect("lock state");
        let left = state.valid_until.saturating_duration_since(Instant::now());
        let expired = left.is_zero();
        state.renewal_failure = Some(error.clone());
        drop(state);
        self.engine.options().log(LogLevel::Warn, || {
          format!(
            "renewing '{}' failed ({} ms of its lease left): {error}",
            self.name,
            left.as_millis()
          )
        });
        if expired {
          Err(Error::new(
            ErrorKind::LockLost,
            format!(
              "the lock on '{}' ran out while it could not be renewed: {error}",
              self.name
            ),
          ))
        } else {
          Ok(())
        }
      }
    }
  }

  fn valid_until(&self) -> Instant {
    self.state.lock().expect("lock state").valid_until
  }

  fn ran_out_error(&self) -> Error {
    if self.watchdog && self.hold_until.is_some() && self.capped_by_max_hold(self.valid_until()) {
      return Error::new(
        ErrorKind::LockLost,
        format!(
          "the lock on '{}' reached its maxHold and was left to expire",
          self.name
        ),
      );
    }
    match self
      .state
      .lock()
      .expect("lock state")
      .renewal_failure
      .clone()
    {
      Some(failure) => Error::new(
        ErrorKind::LockLost,
        format!(
          "the lock on '{}' ran out while it could not be renewed: {failure}",
          self.name
        ),
      ),
      None => Error::new(
        ErrorKind::LockLost,
        format!("the lease on '{}' ran out without renewal", self.name),
      ),
    }
  }
}

/// The guardian of one held lock: renews it while the watchdog is on, reports it lost when a
/// renewal finds it gone or its lease runs out, and releases it when the client closes.
async fn guard(held: Arc<HeldLock>) {
  let closed = held.engine.closed_token().clone();
  loop {
    let Some((at, renew)) = held.next_step() else {
      return;
    };
    tokio::select! {
      _ = held.released.cancelled() => return,
      _ = closed.cancelled() => return end_at_close(&held).await,
      _ = held.changed.notified() => continue,
      _ = tokio::time::sleep_until(at.into()) => {}
    }
    if !renew {
      held.lose(held.ran_out_error());
      return;
    }
    let renewed_at = Instant::now();
    let renewal = held.renew();
    tokio::pin!(renewal);
    // The lease can run out before a renewal is answered (a frozen connection): the loss is
    // reported when the lease ends, not when the renewal times out.
    let renewed = loop {
      let lease_end = held.valid_until();
      tokio::select! {
        renewed = &mut renewal => break renewed,
        _ = held.released.cancelled() => return,
        _ = closed.cancelled() => return end_at_close(&held).await,
        _ = tokio::time::sleep_until(lease_end.into()) => {
          // `extend` may have moved the lease meanwhile.
          if Instant::now() >= held.valid_until() {
            held.lose(Error::new(
              ErrorKind::LockLost,
              format!(
                "the lock on '{}' ran out while it could not be renewed: the renewal sent had no answer yet",
                held.name
              ),
            ));
            return;
          }
        }
      }
    };
    match renewed {
      Ok(()) => {
        // A failed renewal that left time on the lease is retried soon, not at the next third;
        // the lease running out meanwhile is reported when it does.
        if held.next_step().is_some_and(|(at, _)| at <= renewed_at) {
          let retry_at = (Instant::now() + RETRY_RENEWAL_AFTER).min(held.valid_until());
          tokio::select! {
            _ = held.released.cancelled() => return,
            _ = closed.cancelled() => return end_at_close(&held).await,
            _ = tokio::time::sleep_until(retry_at.into()) => {}
          }
        }
      }
      Err(reason) => {
        held.lose(reason);
        return;
      }
    }
  }
}

async fn end_at_close(held: &HeldLock) {
  let reason = Error::new(
    ErrorKind::Closed,
    format!("the client was closed while holding '{}'", held.name),
  );
  if held.lose(reason).kind() == ErrorKind::Closed {
    let _ = held.hold.release().await;
  }
}

/// When a new hold's guardian must first act: its first renewal, or the end of its lease.
fn first_step(grant: &Grant, acquired_at: Instant) -> Instant {
  let lease_end = grant.valid_until;
  if !grant.watchdog {
    return lease_end;
  }
  let renewal = lease_end
    .checked_sub(Duration::from_millis(grant.ttl_ms).mul_f64(1.0 - RENEW_EVERY))
    .unwrap_or(acquired_at);
  renewal.min(lease_end)
}

/// Holds whose guardian task has not started yet, by when it must: most holds are released
/// long before their first renewal, and a hold that never needs its guardian costs no task and
/// wakes none of the runtime's threads. One watcher task (running only while holds wait here)
/// starts each guardian when it is due, and every one when the client closes.
#[derive(Default)]
pub struct Watchlist {
  state: Mutex<Watching>,
  wake: Notify,
  next_place: AtomicU64,
}

#[derive(Default)]
struct Watching {
  due: BTreeMap<(Instant, u64), Arc<HeldLock>>,
  watcher_runs: bool,
  /// When the sleeping watcher wakes by itself. Holds released meanwhile stay counted in it,
  /// so a hold due later needs no wake-up: waking the watcher costs a thread switch per hold.
  watcher_wakes_at: Option<Instant>,
}

impl Watchlist {
  fn watch(&self, engine: &Arc<Engine>, held: Arc<HeldLock>) {
    let place = held.watched;
    let mut state = self.state.lock().expect("watchlist");
    let earliest = state
      .watcher_wakes_at
      .is_none_or(|wakes_at| place.0 < wakes_at);
    state.due.insert(place, held);
    let start = !std::mem::replace(&mut state.watcher_runs, true);
    drop(state);
    if start {
      engine.track(watcher(
        engine.watchlist_handle(),
        engine.closed_token().clone(),
      ));
    } else if earliest {
      self.wake.notify_one();
    }
  }

  fn forget(&self, place: (Instant, u64)) {
    self.state.lock().expect("watchlist").due.remove(&place);
  }
}

async fn watcher(watchlist: Arc<Watchlist>, closed: CancellationToken) {
  loop {
    let next = {
      let mut state = watchlist.state.lock().expect("watchlist");
      let now = Instant::now();
      let mut due = Vec::new();
      let next = loop {
        match state.due.first_key_value() {
          Some((place, _)) if place.0 <= now || closed.is_cancelled() => {
            let (_, held) = state.due.pop_first().expect("a first entry");
            due.push(held);
          }
          Some((place, _)) => break Some(place.0),
          None => {
            state.watcher_runs = false;
            break None;
          }
        }
      };
      state.watcher_wakes_at = next;
      drop(state);
      for held in due {
        held.guard_now();
      }
      match next {
        Some(next) => next,
        None => return,
      }
    };
    tokio::select! {
      _ = tokio::time::sleep_until(next.into()) => {}
      _ = watchlist.wake.notified() => {}
      _ = closed.cancelled() => {}
    }
  }
}

//! What every blocking wait shares, whatever the primitive: the reasons a wait ends (abort,
//! close, deadline), the rules for retrying attempts, and the loop that waits for a release
//! message or a re-check timer between attempts.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::notify::Subscription;
use super::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::options::LogLevel;

/// Re-check interval when the holder's remaining ttl is unknown (a key without expiry, say).
const UNKNOWN_TTL_RECHECK: Duration = Duration::from_millis(1000);

/// The reasons a wait ends without the lock.
pub struct Stop<'a> {
  pub key: &'a str,
  pub cancel: CancellationToken,
  pub closed: CancellationToken,
  pub started: Instant,
  pub deadline: Option<Instant>,
}

impl Stop<'_> {
  pub fn check(&self, last_failure: Option<&Error>) -> Result<()> {
    if self.closed.is_cancelled() {
      return Err(Error::closed());
    }
    if self.cancel.is_cancelled() {
      return Err(self.aborted());
    }
    if self
      .deadline
      .is_some_and(|deadline| Instant::now() >= deadline)
    {
      return Err(self.timed_out(last_failure));
    }
    Ok(())
  }

  pub fn aborted(&self) -> Error {
    Error::new(
      ErrorKind::Aborted,
      format!("the wait for '{}' was aborted", self.key),
    )
  }

  pub fn timed_out(&self, last_failure: Option<&Error>) -> Error {
    let waited = self.started.elapsed().as_millis();
    let error = Error::new(
      ErrorKind::WaitTimeout,
      format!(
        "'{}' was not acquired within the wait timeout ({waited} ms){}",
        self.key,
        last_failure
          .map(|e| format!("; the last attempt failed: {e}"))
          .unwrap_or_default()
      ),
    );
    match last_failure {
      Some(failure) => error.with_cause(failure.clone()),
      None => error,
    }
  }

  /// Waits for `wake` unless the wait is aborted or the client closes; the deadline does not
  /// cut it (the first attempt of a wait is made whatever its timeout).
  pub async fn unless_cancelled<T>(&self, wake: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::select! {
      biased;
      _ = self.closed.cancelled() => Err(Error::closed()),
      _ = self.cancel.cancelled() => Err(self.aborted()),
      value = wake => Ok(value),
    }
  }

  /// Waits for `wake` until a stop reason or the deadline comes.
  pub async fn until<T>(
    &self,
    wake: impl std::future::Future<Output = T>,
    last_failure: Option<&Error>,
  ) -> Result<T> {
    let deadline = self.deadline.map(tokio::time::Instant::from);
    tokio::select! {
      biased;
      _ = self.closed.cancelled() => Err(Error::closed()),
      _ = self.cancel.cancelled() => Err(self.aborted()),
      // Before the deadline: what is ready counts, also at a wait timeout of 0.
      value = wake => Ok(value),
      _ = async { match deadline { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
        Err(self.timed_out(last_failure))
      }
    }
  }
}

/// The attempts of one wait, for the rules both kinds of wait share.
pub struct Tries {
  made: u32,
  /// `waitTimeout: 0`: the one attempt is made whatever the deadline, bounded by the host
  /// timeouts alone.
  single: bool,
  answered: bool,
  unreachable_in_a_row: u32,
}

impl Tries {
  /// `single`: a wait timeout of 0, one attempt.
  pub fn new(single: bool) -> Tries {
    Tries {
      made: 0,
      single,
      answered: false,
      unreachable_in_a_row: 0,
    }
  }

  /// Before an attempt: the first is always made, later ones only while the wait lasts.
  pub fn check(&self, stop: &Stop<'_>, last_failure: Option<&Error>) -> Result<()> {
    if self.made == 0 {
      return Ok(());
    }
    stop.check(last_failure)
  }

  pub async fn run<T>(
    &mut self,
    stop: &Stop<'_>,
    attempt: impl std::future::Future<Output = T>,
    last_failure: Option<&Error>,
  ) -> Result<T> {
    self.made += 1;
    if self.made == 1 && self.single {
      stop.unless_cancelled(attempt).await
    } else {
      stop.until(attempt, last_failure).await
    }
  }

  /// Until a host has answered, a failure is the answer: hosts that cannot be reached from the
  /// start (a wrong address, refused credentials, all down) fail the call after a second try
  /// in a row (the first may meet a connection that a restart broke), as they fail `lock`.
  /// Once the wait is under way, failures are retried until it times out. True: give up.
  pub fn unreachable<T>(&mut self, answered: bool, outcome: &Result<T>) -> bool {
    self.answered |= answered;
    let unreachable = !self.answered && outcome.as_ref().is_err_and(is_unreachable);
    self.unreachable_in_a_row = if unreachable {
      self.unreachable_in_a_row + 1
    } else {
      0
    };
    self.unreachable_in_a_row >= 2
  }
}

/// Failures that say the hosts cannot be used at all (nothing listens, credentials refused, a
/// majority of them so), as opposed to a slow answer.
pub fn is_unreachable(error: &Error) -> bool {
  matches!(
    error.kind(),
    ErrorKind::Connection | ErrorKind::Auth | ErrorKind::NoQuorum
  )
}

pub fn is_transient(error: &Error) -> bool {
  matches!(
    error.kind(),
    ErrorKind::NoQuorum | ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::ValidityExpired
  )
}

/// When to look again at a lock whose holder has `holder_ttl_ms` left: right when it expires
/// (plus a little jitter so that waiters of several processes do not come at once), in case
/// it is never released.
pub fn recheck_after(holder_ttl_ms: Option<i64>) -> Duration {
  match holder_ttl_ms {
    Some(ttl) if ttl >= 0 => Duration::from_millis(ttl as u64 + fastrand::u64(1..=5)),
    _ => UNKNOWN_TTL_RECHECK,
  }
}

/// One attempt of a primitive's wait.
pub enum Attempt<T> {
  Taken(T),
  /// Not granted now; when to look again at the latest (a release message may come sooner).
  Busy(Duration),
  /// As `Busy`, with the channel whose release message to wait for instead of the wait's own
  /// (the key that was held, among several).
  BusyOn(Duration, String),
}

/// Makes attempts until one is granted or the wait ends, as every primitive waits: the first
/// attempt goes out at once; once one is refused, release messages on `channel` are heard and
/// the next attempt follows at once (a release may have come before the subscription did);
/// later attempts follow a release message or the re-check time the refusal gave, whichever
/// comes first. Transient failures are retried until the wait ends; hosts that cannot be
/// reached from the start fail the wait (see [`Tries::unreachable`]).
pub async fn attempt_until_granted<T, F, Fut>(
  engine: &Engine,
  stop: &Stop<'_>,
  single: bool,
  channel: &str,
  mut attempt: F,
) -> Result<T>
where
  F: FnMut() -> Fut,
  Fut: Future<Output = Result<Attempt<T>>>,
{
  let mut subscription: Option<(String, Subscription)> = None;
  let mut last_failure = None;
  let mut tries = Tries::new(single);
  loop {
    tries.check(stop, last_failure.as_ref())?;
    let outcome = tries.run(stop, attempt(), last_failure.as_ref()).await?;
    let unreachable = tries.unreachable(outcome.is_ok(), &outcome);
    let recheck = match outcome {
      Ok(Attempt::Taken(granted)) => return Ok(granted),
      Err(error) if unreachable => return Err(error),
      Ok(Attempt::Busy(recheck)) => Recheck::Hearing(recheck, channel.to_owned()),
      Ok(Attempt::BusyOn(recheck, busy)) => Recheck::Hearing(recheck, busy),
      Err(error) if is_transient(&error) => {
        engine.options().log(LogLevel::Warn, || {
          format!(
            "waiting for '{}': an attempt failed, retrying: {error}",
            stop.key
          )
        });
        last_failure = Some(error);
        Recheck::After(engine.options().retry.pause())
      }
      Err(error) => return Err(error),
    };
    let recheck = match recheck {
      Recheck::After(recheck) => recheck,
      Recheck::Hearing(recheck, wanted) => {
        if subscription.as_ref().map(|(current, _)| current) != Some(&wanted) {
          // From now on releases are heard; look again at once in case one came before the
          // subscription did. With no wait left, give up first.
          stop.check(None)?;
          let bound = engine.options().command_timeout;
          let subscribed = stop
            .until(engine.notifications().subscribe(&wanted, bound), None)
            .await?;
          subscription = Some((wanted, subscribed));
          continue;
        }
        recheck
      }
    };
    stop
      .until(
        message_or(
          subscription.as_mut().map(|(_, subscribed)| subscribed),
          recheck,
        ),
        last_failure.as_ref(),
      )
      .await?;
  }
}

enum Recheck {
  After(Duration),
  /// After this long or a release message on the channel.
  Hearing(Duration, String),
}

/// Waits for any message on `subscription` or until `recheck` has passed.
async fn message_or(subscription: Option<&mut Subscription>, recheck: Duration) {
  let timer = tokio::time::sleep(recheck);
  tokio::pin!(timer);
  let Some(subscription) = subscription else {
    return timer.await;
  };
  tokio::select! {
    _ = &mut timer => {}
    message = subscription.receiver.recv() => {
      if let Err(RecvError::Closed) = message {
        // No messages any more: the timer alone ends the pause.
        timer.await;
      }
    }
  }
}

/// A primitive's wait from start to end: attempts until one is granted or the wait ends (see
/// [`attempt_until_granted`]), counted in the stats. After a wait that ended without a grant,
/// `clean_up` runs in the background: an attempt whose answer was not awaited (an abort) may
/// still have taken something, and a waiter leaves the queues it joined; it goes out on the
/// same connection as that attempt, so after it.
pub async fn wait_for_grant<T, F, Fut>(
  engine: &Engine,
  name: &str,
  cancel: CancellationToken,
  wait: Option<Duration>,
  channel: &str,
  attempt: F,
  clean_up: impl Future<Output = ()> + Send + 'static,
) -> Result<T>
where
  F: FnMut() -> Fut,
  Fut: Future<Output = Result<Attempt<T>>>,
{
  let started = Instant::now();
  let stop = Stop {
    key: name,
    cancel,
    closed: engine.closed_token().clone(),
    started,
    deadline: wait.map(|wait| started + wait),
  };
  let single = wait == Some(Duration::ZERO);
  let outcome = attempt_until_granted(engine, &stop, single, channel, attempt).await;
  engine.count(&outcome, |_| Some(super::stats::Event::Acquired));
  if outcome.is_err() {
    engine.track(clean_up);
  }
  outcome
}

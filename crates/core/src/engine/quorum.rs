//! Asking N independent hosts the same question and deciding on a majority (Redlock).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;

use super::host::Host;
use crate::error::{Error, ErrorKind};

/// What one host answered.
pub enum Vote<T> {
  /// The host did what was asked (took the lock, renewed it, released it).
  Yes(T),
  /// The host refused because the lock is not ours; carries the holder's remaining ttl in ms
  /// when the host told it (negative when unknown).
  No(i64),
  /// The host failed to answer properly.
  Failed(Error),
}

/// The answers gathered until the outcome was decided.
pub struct Tally<T> {
  pub hosts: usize,
  pub quorum: usize,
  pub yes: Vec<(usize, T)>,
  pub no: usize,
  /// Shortest remaining ttl that a refusing host reported, if any.
  pub holder_ttl_ms: Option<i64>,
  pub failed: Vec<Error>,
  /// The hosts (by index) whose failures `failed` holds.
  pub failed_hosts: Vec<usize>,
  /// Hosts still working on the request when the outcome was decided.
  pub pending: Vec<(usize, JoinHandle<Vote<T>>)>,
}

impl<T> Tally<T> {
  /// No answers yet from `hosts` hosts.
  pub fn new(hosts: usize) -> Tally<T> {
    Tally {
      hosts,
      quorum: quorum_of(hosts),
      yes: Vec::new(),
      no: 0,
      holder_ttl_ms: None,
      failed: Vec::new(),
      failed_hosts: Vec::new(),
      pending: Vec::new(),
    }
  }

  pub fn has_quorum(&self) -> bool {
    self.yes.len() >= self.quorum
  }

  /// True when enough hosts said "not yours" that no majority could ever say yes: the lock is
  /// held by someone else, whatever the failed hosts would have said.
  pub fn refused(&self) -> bool {
    self.no > self.hosts - self.quorum
  }

  /// The error for a call that neither reached a quorum nor was refused by one: too many hosts
  /// failed. With a single host, that host's own error is the answer.
  pub fn failure(mut self) -> Error {
    if self.hosts == 1 && self.failed.len() == 1 {
      return self.failed.pop().expect("one failure");
    }
    let causes: Vec<String> = self
      .failed
      .iter()
      .map(|e| format!("{} ({})", e.message(), e.code()))
      .collect();
    Error::new(
      ErrorKind::NoQuorum,
      format!(
        "{} of {} hosts answered; {} needed. Failed hosts: {}",
        self.hosts - self.failed.len(),
        self.hosts,
        self.quorum,
        if causes.is_empty() {
          "none".to_owned()
        } else {
          causes.join("; ")
        }
      ),
    )
  }

  /// True once the outcome is known: a quorum said yes, enough said no, or too few are left.
  pub fn decided(&self) -> bool {
    let answered = self.yes.len() + self.no + self.failed.len();
    let undecided = self.hosts - answered;
    self.has_quorum() || self.refused() || self.yes.len() + undecided < self.quorum
  }

  pub fn record(&mut self, index: usize, vote: Vote<T>) {
    match vote {
      Vote::Yes(value) => self.yes.push((index, value)),
      Vote::No(ttl) => {
        self.no += 1;
        if ttl >= 0 {
          self.holder_ttl_ms = Some(self.holder_ttl_ms.map_or(ttl, |shortest| shortest.min(ttl)));
        }
      }
      Vote::Failed(error) => {
        self.failed.push(error);
        self.failed_hosts.push(index);
      }
    }
  }
}

pub fn quorum_of(hosts: usize) -> usize {
  hosts / 2 + 1
}

/// Sends `ask` to every host at once and returns as soon as the outcome is decided: a quorum
/// said yes, enough said no, or a quorum can no longer be reached. Hosts that have not answered
/// by then keep going in the background, so a slow host never delays the answer.
pub async fn poll<T, F, Fut>(hosts: &[Arc<Host>], ask: F) -> Tally<T>
where
  T: Send + 'static,
  F: Fn(Arc<Host>) -> Fut,
  Fut: Future<Output = Vote<T>> + Send + 'static,
{
  let mut tally = Tally::new(hosts.len());
  if let [host] = hosts {
    tally.record(0, ask(host.clone()).await);
    return tally;
  }
  // Boxed so that the single-host path above does not carry this one's size.
  Box::pin(poll_many(hosts, ask, tally)).await
}

async fn poll_many<T, F, Fut>(hosts: &[Arc<Host>], ask: F, mut tally: Tally<T>) -> Tally<T>
where
  T: Send + 'static,
  F: Fn(Arc<Host>) -> Fut,
  Fut: Future<Output = Vote<T>> + Send + 'static,
{
  let mut tasks: Vec<Option<JoinHandle<Vote<T>>>> = hosts
    .iter()
    .map(|host| Some(tokio::spawn(ask(host.clone()))))
    .collect();
  let mut answers: FuturesUnordered<_> = tasks
    .iter_mut()
    .enumerate()
    .map(|(index, task)| {
      let task = task.as_mut().expect("every host has a task");
      async move { (index, task.await) }
    })
    .collect();
  let mut finished = Vec::with_capacity(hosts.len());
  while let Some((index, joined)) = answers.next().await {
    finished.push(index);
    let vote = joined.unwrap_or_else(|e| {
      Vote::Failed(Error::new(
        ErrorKind::Redis,
        format!("host task failed: {e}"),
      ))
    });
    tally.record(index, vote);
    if tally.decided() {
      break;
    }
  }
  drop(answers);
  for index in finished {
    tasks[index] = None;
  }
  tally.pending = tasks
    .into_iter()
    .enumerate()
    .filter_map(|(index, task)| Some((index, task?)))
    .collect();
  tally
}

/// Time left on a lock taken `elapsed` after the request went out with `ttl`, less the margin
/// for clock drift between hosts (`ttl × drift_factor + 2 ms`, as in the Redlock description).
/// `None` when nothing is left.
pub fn validity(ttl: Duration, elapsed: Duration, drift_factor: f64) -> Option<Duration> {
  let drift = ttl.mul_f64(drift_factor) + Duration::from_millis(2);
  ttl
    .checked_sub(elapsed + drift)
    .filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
  use super::*;

  fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
  }

  #[test]
  fn quorum_is_a_strict_majority() {
    assert_eq!(quorum_of(1), 1);
    assert_eq!(quorum_of(2), 2);
    assert_eq!(quorum_of(3), 2);
    assert_eq!(quorum_of(4), 3);
    assert_eq!(quorum_of(5), 3);
  }

  #[test]
  fn validity_subtracts_elapsed_time_and_drift() {
    // 10 s ttl, drift 1 % → 100 ms + 2 ms margin.
    assert_eq!(validity(ms(10_000), ms(0), 0.01), Some(ms(9_898)));
    assert_eq!(validity(ms(10_000), ms(898), 0.01), Some(ms(9_000)));
    // Exactly nothing left counts as expired, and so does less than nothing.
    assert_eq!(validity(ms(10_000), ms(9_898), 0.01), None);
    assert_eq!(validity(ms(10_000), ms(9_897), 0.01), Some(ms(1)));
    assert_eq!(validity(ms(10_000), ms(20_000), 0.01), None);
    // The fixed 2 ms leaves a 2 ms ttl nothing, whatever the drift factor.
    assert_eq!(validity(ms(2), ms(0), 0.0), None);
    assert_eq!(validity(ms(3), ms(0), 0.0), Some(ms(1)));
  }

  fn tally(hosts: usize) -> Tally<()> {
    Tally {
      hosts,
      quorum: quorum_of(hosts),
      yes: vec![],
      no: 0,
      holder_ttl_ms: None,
      failed: vec![],
      failed_hosts: vec![],
      pending: vec![],
    }
  }

  #[test]
  fn decisions_come_as_soon_as_the_outcome_is_known() {
    let mut t = tally(5);
    t.record(0, Vote::Yes(()));
    t.record(1, Vote::Yes(()));
    assert!(!t.decided());
    t.record(2, Vote::Yes(()));
    assert!(t.decided() && t.has_quorum());

    let mut t = tally(5);
    for i in 0..3 {
      t.record(
        i,
        Vote::Failed(Error::new(ErrorKind::Connection, format!("h{i}: refused"))),
      );
    }
    assert!(t.decided() && !t.has_quorum() && !t.refused());
    let err = t.failure();
    assert_eq!(err.kind(), ErrorKind::NoQuorum);
    assert!(
      err.message().contains("h0: refused") && err.message().contains("h2: refused"),
      "{err}"
    );

    let mut t = tally(3);
    t.record(0, Vote::No(500));
    t.record(1, Vote::No(300));
    assert!(t.decided() && t.refused());
    assert_eq!(t.holder_ttl_ms, Some(300));
  }

  #[test]
  fn a_single_host_reports_its_own_error() {
    let mut t = tally(1);
    t.record(
      0,
      Vote::Failed(Error::new(ErrorKind::Auth, "h: authentication failed")),
    );
    assert_eq!(t.failure().kind(), ErrorKind::Auth);
  }
}

//! Counters of what a client's locks did: cheap enough to keep always on, read on demand.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
  /// `lock` took a key.
  Locked,
  /// `lock` found the key held.
  Busy,
  /// `unlock` released a lock.
  Unlocked,
  /// A blocking acquire got its lock.
  Acquired,
  /// A held lock was released through its handle.
  Released,
  /// The watchdog renewed a held lock.
  Renewed,
  /// A held lock was lost.
  Lost,
  /// A blocking acquire gave up after its wait timeout.
  WaitTimedOut,
  /// A blocking acquire was aborted.
  Aborted,
  /// A call failed for another reason (host down, no quorum, …).
  Failed,
  /// A held lock was released, or a call or wait ended, because the client was closed.
  Closed,
}

const EVENTS: usize = 11;

#[derive(Default)]
pub struct Stats {
  counts: [AtomicU64; EVENTS],
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
  pub locked: u64,
  pub busy: u64,
  pub unlocked: u64,
  pub acquired: u64,
  pub released: u64,
  pub renewed: u64,
  pub lost: u64,
  pub wait_timed_out: u64,
  pub aborted: u64,
  pub failed: u64,
  pub closed: u64,
}

impl Stats {
  pub fn record(&self, event: Event) {
    self.counts[event as usize].fetch_add(1, Ordering::Relaxed);
  }

  pub fn counts(&self) -> Counts {
    let read = |event: Event| self.counts[event as usize].load(Ordering::Relaxed);
    Counts {
      locked: read(Event::Locked),
      busy: read(Event::Busy),
      unlocked: read(Event::Unlocked),
      acquired: read(Event::Acquired),
      released: read(Event::Released),
      renewed: read(Event::Renewed),
      lost: read(Event::Lost),
      wait_timed_out: read(Event::WaitTimedOut),
      aborted: read(Event::Aborted),
      failed: read(Event::Failed),
      closed: read(Event::Closed),
    }
  }
}

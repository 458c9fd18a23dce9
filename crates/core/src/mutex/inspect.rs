//! Looking at locks from the outside: for operators, dashboards and the `relock` command.

use futures_util::future::join_all;
use redis::Value;

use super::keys::{LockKeys, Wake, INSPECT, LOCK_KINDS};
use super::Mutex;
use crate::engine::host::Host;
use crate::engine::quorum::quorum_of;
use crate::error::{Error, ErrorKind, Result};
use crate::rwlock::{RwKeys, LIVE_READERS};
use crate::semaphore::SemaphoreKeys;
use crate::validate;

/// The state of one lock on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct LockState {
  pub host: String,
  /// The holder's token, if the lock is held.
  pub holder: Option<String>,
  /// Remaining ttl in ms; `None` when not held or held without expiry.
  pub ttl_ms: Option<i64>,
  /// The last fencing number handed out for the key.
  pub fence: Option<i64>,
  /// Fair waiters in queue order.
  pub waiters: Vec<QueuedWaiter>,
  /// True when the key holds something other than a relock lock or semaphore (application
  /// data, or another client's lock): relock reports no holder for it and never releases it.
  pub foreign: bool,
  /// True when the key is a relock semaphore (see `Semaphore::state` for its holders).
  pub semaphore: bool,
  /// How many readers hold the key as a read-write lock (see `RwLock::state` for them).
  pub readers: u64,
  /// Why this host could not be asked; the other fields are empty then.
  pub error: Option<Error>,
}

/// Lock keys found by `list`, and the hosts that could not be asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
  pub keys: Vec<String>,
  pub failed: Vec<(String, Error)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueuedWaiter {
  pub token: String,
  /// Time left before the waiter is dropped unless it checks in again, by Redis's clock.
  pub expires_in_ms: Option<i64>,
  /// The lease it asked for.
  pub ttl_ms: Option<i64>,
}

/// Most keys `list` returns, so that a pattern matching millions of keys stays cheap.
pub const LIST_LIMIT: usize = 10_000;

impl Mutex {
  /// The state of `key` on every host, asked at once. A host that fails is reported in its
  /// entry, so that the others are still seen when one is down; only when every host fails is
  /// the call a failure.
  pub async fn inspect(&self, key: &str) -> Result<Vec<LockState>> {
    validate::key(key)?;
    self.engine.ensure_open()?;
    let stored = self.engine.redis_key(key);
    let keys = LockKeys::new(&stored);
    let permits = SemaphoreKeys::new(&stored).held;
    let readers = RwKeys::new(&stored).readers;
    let [lock, queue, waiters, fence] = keys.all();
    let script_keys = [
      lock,
      queue,
      waiters,
      fence,
      permits.as_str(),
      readers.as_str(),
    ];
    let answers = join_all(self.engine.hosts().iter().map(|host| {
      let script_keys = &script_keys;
      async move {
        let reply: Vec<Value> = host.eval(&INSPECT, script_keys, &[]).await?;
        parse_state(host.label(), reply).ok_or_else(|| {
          Error::new(
            ErrorKind::Redis,
            format!("{}: unexpected reply to the inspect script", host.label()),
          )
        })
      }
    }))
    .await;
    let states: Vec<LockState> = self
      .engine
      .hosts()
      .iter()
      .zip(answers)
      .map(|(host, answer)| answer.unwrap_or_else(|error| LockState::failed(host.label(), error)))
      .collect();
    every_host_failed(states.iter().map(|state| state.error.as_ref()))?;
    Ok(states)
  }

  /// Lock keys matching `pattern` (Redis glob syntax), found with SCAN on every host: keys that
  /// hold a relock lock or are a relock semaphore now, never relock's side keys or other data;
  /// at most `limit` of them.
  /// Hosts that fail are listed as such; only when every host fails is the call a failure.
  pub async fn list(&self, pattern: &str, limit: usize) -> Result<Listing> {
    if self.engine.options().cluster {
      return Err(Error::new(
        ErrorKind::Unsupported,
        "listing locks is not supported on a cluster yet",
      ));
    }
    self.engine.ensure_open()?;
    let pattern = format!("{}{pattern}", glob_escaped(&self.engine.options().prefix));
    let scans = join_all(
      self
        .engine
        .hosts()
        .iter()
        .map(|host| self.list_on(host, &pattern, limit)),
    )
    .await;
    every_host_failed(scans.iter().map(|scan| scan.as_ref().err()))?;
    let mut found = std::collections::BTreeSet::new();
    let mut failed = Vec::new();
    let prefix = &self.engine.options().prefix;
    for (host, scan) in self.engine.hosts().iter().zip(scans) {
      match scan {
        Ok(keys) => found.extend(
          keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(prefix.as_str()).map(str::to_owned)),
        ),
        Err(error) => failed.push((host.label().to_owned(), error)),
      }
    }
    Ok(Listing {
      keys: found.into_iter().take(limit).collect(),
      failed,
    })
  }

  /// Locks (strings), semaphores (sorted sets) and read-write locks held by readers only (their
  /// readers' sorted sets) matching `pattern` on `host`.
  async fn list_on(&self, host: &Host, pattern: &str, limit: usize) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for key_type in ["string", "zset"] {
      self
        .scan(
          host,
          pattern,
          key_type,
          limit,
          &mut found,
          |keys| async move {
            let candidates: Vec<&str> = keys
              .iter()
              .map(String::as_str)
              .filter(|key| !LockKeys::is_side_key(key))
              .collect();
            if candidates.is_empty() {
              return Ok(Vec::new());
            }
            let permits: Vec<String> = candidates
              .iter()
              .map(|key| SemaphoreKeys::new(key).held)
              .collect();
            let script_keys: Vec<&str> = candidates
              .iter()
              .copied()
              .chain(permits.iter().map(String::as_str))
              .collect();
            let kinds: Vec<i64> = host.eval(&LOCK_KINDS, &script_keys, &[]).await?;
            Ok(
              candidates
                .iter()
                .zip(kinds)
                .filter(|(_, kind)| *kind == 1 || *kind == 3)
                .map(|(key, _)| key.to_string())
                .collect(),
            )
          },
        )
        .await?;
    }
    for (form, readers_pattern) in RwKeys::readers_patterns(pattern).iter().enumerate() {
      self
        .scan(
          host,
          readers_pattern,
          "zset",
          limit,
          &mut found,
          |keys| async move {
            let named: Vec<(String, &str)> = keys
              .iter()
              .filter_map(|readers| {
                Some((RwKeys::name_of_readers(readers, form)?, readers.as_str()))
              })
              .collect();
            if named.is_empty() {
              return Ok(Vec::new());
            }
            let script_keys: Vec<&str> = named.iter().map(|(_, readers)| *readers).collect();
            let counts: Vec<i64> = host.eval(LIVE_READERS.script(), &script_keys, &[]).await?;
            Ok(
              named
                .into_iter()
                .zip(counts)
                .filter(|(_, count)| *count > 0)
                .map(|((name, _), _)| name)
                .collect(),
            )
          },
        )
        .await?;
    }
    Ok(found)
  }

  /// SCANs `host` for keys of `key_type` matching `pattern` and adds what `keep` makes of
  /// each batch to `found`, until the scan ends or `found` has `limit` keys.
  async fn scan<F, Fut>(
    &self,
    host: &Host,
    pattern: &str,
    key_type: &str,
    limit: usize,
    found: &mut Vec<String>,
    keep: F,
  ) -> Result<()>
  where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>>>,
  {
    let mut cursor = 0u64;
    while found.len() < limit {
      let mut command = redis::cmd("SCAN");
      command
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(500)
        .arg("TYPE")
        .arg(key_type);
      self.engine.ensure_open()?;
      let (next, keys): (u64, Vec<String>) = host.query(&command).await?;
      if !keys.is_empty() {
        found.extend(keep(keys).await?);
      }
      if next == 0 {
        break;
      }
      cursor = next;
    }
    Ok(())
  }

  /// Releases `key` whoever holds it, as its holder would (a fair waiter next in line gets
  /// it); true if it was held on a quorum and is now released there. Refuses a key that holds
  /// anything but a relock lock, so that it can never delete application data.
  pub async fn force_release(&self, key: &str) -> Result<bool> {
    validate::key(key)?;
    let states = self.inspect(key).await?;
    if let Some(semaphore) = states.iter().find(|state| state.semaphore) {
      return Err(Error::invalid_argument(format!(
        "'{key}' is a semaphore on {}: its permits are given back through their handles, or come back when their leases end; it was left untouched",
        semaphore.host
      )));
    }
    if let Some(foreign) = states.iter().find(|state| state.foreign) {
      return Err(Error::invalid_argument(format!(
        "'{key}' is not a relock lock on {} (not a string with an expiry holding a relock token); it was left untouched",
        foreign.host
      )));
    }
    let keys = LockKeys::new(&self.engine.redis_key(key));
    let mut released = 0;
    for (host, state) in self.engine.hosts().iter().zip(states) {
      if let Some(token) = state.holder {
        self.engine.ensure_open()?;
        let done = keys.release_on(host, &token, Wake::Waiters).await?;
        released += done as usize;
      }
    }
    Ok(released >= quorum_of(self.engine.hosts().len()))
  }
}

/// `text` with the glob characters of SCAN MATCH escaped, to match literally.
fn glob_escaped(text: &str) -> String {
  let mut escaped = String::with_capacity(text.len());
  for c in text.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      escaped.push('\\');
    }
    escaped.push(c);
  }
  escaped
}

/// The error for a call that no host answered: a single host's own, or all of them named.
fn every_host_failed<'a>(errors: impl Iterator<Item = Option<&'a Error>>) -> Result<()> {
  let errors: Vec<Option<&Error>> = errors.collect();
  if errors.iter().any(Option::is_none) {
    return Ok(());
  }
  let failures: Vec<&Error> = errors.into_iter().flatten().collect();
  if let [only] = failures.as_slice() {
    return Err((*only).clone());
  }
  Err(Error::new(
    ErrorKind::NoQuorum,
    format!(
      "no host answered: {}",
      failures
        .iter()
        .map(|error| format!("{} ({})", error.message(), error.code()))
        .collect::<Vec<_>>()
        .join("; ")
    ),
  ))
}

impl LockState {
  fn failed(host: &str, error: Error) -> LockState {
    LockState {
      host: host.to_owned(),
      holder: None,
      ttl_ms: None,
      fence: None,
      waiters: Vec::new(),
      foreign: false,
      semaphore: false,
      readers: 0,
      error: Some(error),
    }
  }
}

fn parse_state(host: &str, reply: Vec<Value>) -> Option<LockState> {
  let [holder, ttl, fence, now, queue, foreign, semaphore, readers]: [Value; 8] =
    reply.try_into().ok()?;
  let text = |value: &Value| match value {
    Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
    _ => None,
  };
  let holder = text(&holder);
  let now = match now {
    Value::Int(now) => now,
    _ => return None,
  };
  let Value::Array(queue) = queue else {
    return None;
  };
  let waiters = queue
    .chunks(2)
    .filter_map(|pair| {
      let token = text(&pair[0])?;
      let entry = pair.get(1).and_then(text).unwrap_or_default();
      let mut parts = entry.split(' ').map(|part| part.parse::<i64>().ok());
      let deadline = parts.next().flatten();
      Some(QueuedWaiter {
        token,
        expires_in_ms: deadline.map(|d| d - now),
        ttl_ms: parts.next().flatten(),
      })
    })
    .collect();
  Some(LockState {
    host: host.to_owned(),
    ttl_ms: match ttl {
      Value::Int(ms) if ms >= 0 && holder.is_some() => Some(ms),
      _ => None,
    },
    holder,
    fence: text(&fence).and_then(|f| f.parse().ok()),
    waiters,
    foreign: matches!(foreign, Value::Int(1)),
    semaphore: matches!(semaphore, Value::Int(1)),
    readers: match readers {
      Value::Int(count) => count.max(0) as u64,
      _ => return None,
    },
    error: None,
  })
}

//! Looking at locks from the outside: for operators, dashboards and the `relock` command.

use redis::Value;

use crate::core::client::Client;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::quorum::quorum_of;
use crate::core::scripts::{LockKeys, Wake, INSPECT, LOCK_KINDS};
use crate::core::validate;

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
  /// True when the key holds something other than a relock lock (application data, or
  /// another client's lock): relock reports no holder for it and never releases it.
  pub foreign: bool,
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

impl Client {
  /// The state of `key` on every host.
  pub async fn inspect(&self, key: &str) -> Result<Vec<LockState>> {
    validate::key(key)?;
    let keys = LockKeys::new(key);
    let mut states = Vec::new();
    for host in self.hosts() {
      self.ensure_open()?;
      let reply: Vec<Value> = host.eval(&INSPECT, &keys.all(), &[]).await?;
      states.push(parse_state(host.label(), reply).ok_or_else(|| {
        Error::new(
          ErrorKind::Redis,
          format!("{}: unexpected reply to the inspect script", host.label()),
        )
      })?);
    }
    Ok(states)
  }

  /// Lock keys matching `pattern` (Redis glob syntax), found with SCAN on every host: keys that
  /// hold a relock lock now, never relock's side keys or other data; at most `limit` of them.
  pub async fn list(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
    if self.options().cluster {
      return Err(Error::new(
        ErrorKind::Unsupported,
        "listing locks is not supported on a cluster yet",
      ));
    }
    let mut found = std::collections::BTreeSet::new();
    for host in self.hosts() {
      let mut cursor = 0u64;
      loop {
        let mut command = redis::cmd("SCAN");
        command
          .arg(cursor)
          .arg("MATCH")
          .arg(pattern)
          .arg("COUNT")
          .arg(500)
          .arg("TYPE")
          .arg("string");
        self.ensure_open()?;
        let (next, keys): (u64, Vec<String>) = host.query(&command).await?;
        let candidates: Vec<&str> = keys
          .iter()
          .map(String::as_str)
          .filter(|key| !LockKeys::is_side_key(key))
          .collect();
        if !candidates.is_empty() {
          let kinds: Vec<i64> = host.eval(&LOCK_KINDS, &candidates, &[]).await?;
          found.extend(
            candidates
              .iter()
              .zip(kinds)
              .filter(|(_, kind)| *kind == 1)
              .map(|(key, _)| key.to_string()),
          );
        }
        if next == 0 || found.len() >= limit {
          break;
        }
        cursor = next;
      }
    }
    Ok(found.into_iter().take(limit).collect())
  }

  /// Releases `key` whoever holds it, as its holder would (a fair waiter next in line gets
  /// it); true if it was held on a quorum and is now released there. Refuses a key that holds
  /// anything but a relock lock, so that it can never delete application data.
  pub async fn force_release(&self, key: &str) -> Result<bool> {
    validate::key(key)?;
    let states = self.inspect(key).await?;
    if let Some(foreign) = states.iter().find(|state| state.foreign) {
      return Err(Error::invalid_argument(format!(
        "'{key}' is not a relock lock on {} (not a string with an expiry holding a relock token); it was left untouched",
        foreign.host
      )));
    }
    let keys = LockKeys::new(key);
    let mut released = 0;
    for (host, state) in self.hosts().iter().zip(states) {
      if let Some(token) = state.holder {
        self.ensure_open()?;
        let done = keys.release_on(host, &token, Wake::Waiters).await?;
        released += done as usize;
      }
    }
    Ok(released >= quorum_of(self.hosts().len()))
  }
}

fn parse_state(host: &str, reply: Vec<Value>) -> Option<LockState> {
  let [holder, ttl, fence, now, queue, foreign]: [Value; 6] = reply.try_into().ok()?;
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
  })
}

//! Multi-key locks: all keys or none, under one token. Keys in one hash slot are taken by one
//! script; keys spread over Cluster slots are taken slot group by slot group in one global
//! order (by slot number), and what was taken is given back as soon as one group is busy, so
//! two callers with overlapping sets never hold part of what the other needs while waiting:
//! no deadlock. Each key keeps its plain lock (a single lock on any of the keys excludes the
//! multi-key lock and the other way round) and gets its own fence; the watchdog renews one
//! group per script, and losing any key is losing the whole.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, BoxFuture};
use tokio_util::sync::CancellationToken;

use crate::engine::host::Host;
use crate::engine::new_token;
use crate::engine::resp::Reply;
use crate::engine::script::{
  integers, Answer, Decision, FirstAttempt, Lua, OneCall, ReleaseCall, ScriptCall,
};
use crate::engine::stats::Event;
use crate::engine::wait::{recheck_after, wait_for_grant, Attempt};
use crate::engine::watchdog::{Grant, HeldLock, LostCallback, Renewal};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::mutex::acquire::AcquireOptions;
use crate::mutex::keys::{release_call, LockKeys, Wake};
use crate::mutex::Lease;
use crate::validate;

static ACQUIRE: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("scripts/acquire.lua")));
static LOCK: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("scripts/lock.lua")));
static EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("scripts/extend.lua")));

/// The fences of every key, in the order taken, and until when the lease is safe.
type Taken = (Vec<i64>, Instant);

/// Most keys one multi-key lock takes.
pub const MAX_KEYS: usize = 1000;

/// The keys of one call, in the order they are taken: slot groups by slot number, keys sorted
/// within a group. `names` are the caller's names in the same order.
#[derive(Debug, Clone)]
struct KeySet {
  names: Vec<String>,
  groups: Vec<Vec<LockKeys>>,
}

impl KeySet {
  fn all(&self) -> impl Iterator<Item = &LockKeys> {
    self.groups.iter().flatten()
  }
}

pub struct MultiLock {
  engine: Arc<Engine>,
}

impl MultiLock {
  pub fn new(engine: Arc<Engine>) -> MultiLock {
    MultiLock { engine }
  }

  fn host(&self) -> Result<&Arc<Host>> {
    self.engine.single_host("a multi-key lock")
  }

  /// Checks the keys and puts them in the order they are taken. Duplicates are refused: a
  /// caller naming a key twice most likely meant two different keys.
  fn key_set(&self, keys: &[String]) -> Result<KeySet> {
    if keys.is_empty() || keys.len() > MAX_KEYS {
      return Err(Error::invalid_argument(format!(
        "a multi-key lock takes 1 to {MAX_KEYS} keys, got {}",
        keys.len()
      )));
    }
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    for pair in sorted.windows(2) {
      if pair[0] == pair[1] {
        return Err(Error::invalid_argument(format!(
          "'{}' is named twice in one multi-key lock",
          pair[0]
        )));
      }
    }
    let cluster = self.engine.options().cluster;
    let mut by_slot: BTreeMap<u16, Vec<(String, LockKeys)>> = BTreeMap::new();
    for name in sorted {
      validate::key(name)?;
      let stored = self.engine.redis_key(name);
      let slot = if cluster { cluster_slot(&stored) } else { 0 };
      by_slot
        .entry(slot)
        .or_default()
        .push((name.clone(), LockKeys::new(&stored)));
    }
    let mut names = Vec::with_capacity(keys.len());
    let groups = by_slot
      .into_values()
      .map(|group| {
        group
          .into_iter()
          .map(|(name, keys)| {
            names.push(name);
            keys
          })
          .collect()
      })
      .collect();
    Ok(KeySet { names, groups })
  }

  /// One attempt at every key, without waiting: the lease, or `None` when any key is held.
  pub async fn lock(&self, keys: &[String], ttl_ms: u64) -> Result<Option<Lease>> {
    let set = self.key_set(keys)?;
    self.engine.ensure_open()?;
    self.host()?;
    let token = new_token();
    let outcome = match self.try_acquire(&set, &token, ttl_ms, Take::Plain).await {
      Ok(Attempt::Taken((_, valid_until))) => Ok(Some(Lease { token, valid_until })),
      Ok(Attempt::Busy(_) | Attempt::BusyOn(..)) => Ok(None),
      Err(error) => {
        // An attempt that failed midway may have taken some groups.
        let _ = self.release_stored(&set, &token).await;
        Err(error)
      }
    };
    self.engine.count(&outcome, |lease| {
      Some(if lease.is_some() {
        Event::Locked
      } else {
        Event::Busy
      })
    });
    outcome
  }

  /// `lock` as one script call for the event-loop path; `None` when it belongs to the native
  /// path (keys over several slots, bad input, a closed client or several hosts).
  pub fn lock_call(self: &Arc<Self>, keys: &[String], ttl_ms: u64) -> Option<Box<dyn OneCall>> {
    let set = self.key_set(keys).ok()?;
    let eligible =
      set.groups.len() == 1 && self.engine.ensure_open().is_ok() && self.host().is_ok();
    eligible.then(|| {
      Box::new(LockCall {
        multi: self.clone(),
        set,
        token: new_token(),
        ttl_ms,
      }) as Box<dyn OneCall>
    })
  }

  /// `unlock` as one script call for the event-loop path; `None` as for `lock_call`.
  pub fn unlock_call(self: &Arc<Self>, keys: &[String], token: &str) -> Option<Box<dyn OneCall>> {
    let set = self.key_set(keys).ok()?;
    let eligible = set.groups.len() == 1
      && validate::token(token).is_ok()
      && self.engine.ensure_open().is_ok()
      && self.host().is_ok();
    eligible.then(|| {
      Box::new(UnlockCall {
        multi: self.clone(),
        set,
        token: token.to_owned(),
      }) as Box<dyn OneCall>
    })
  }

  /// Releases every key `token` holds; true if it held all of them.
  pub async fn unlock(&self, keys: &[String], token: &str) -> Result<bool> {
    let set = self.key_set(keys)?;
    validate::token(token)?;
    self.engine.ensure_open()?;
    let outcome = self.release_stored(&set, token).await;
    self
      .engine
      .count(&outcome, |released| released.then_some(Event::Unlocked));
    outcome
  }

  /// Waits until every key is this caller's, then hands the hold to a guardian that renews
  /// it and reports its loss (of any key) through `on_lost`.
  pub fn begin_acquire(
    self: &Arc<Self>,
    keys: &[String],
    options: AcquireOptions,
    cancel: CancellationToken,
    on_lost: LostCallback,
  ) -> impl std::future::Future<Output = Result<Arc<HeldLock>>> + Send + 'static {
    let multi = self.clone();
    let caller_order = keys.to_vec();
    let checked = self.key_set(keys).and_then(|set| {
      self.engine.ensure_open()?;
      self.host()?;
      if options.fair {
        return Err(Error::new(
          ErrorKind::Unsupported,
          "fair: true is not offered for multi-key locks: one queue per key cannot order waiters for sets of keys",
        ));
      }
      Ok(set)
    });
    async move {
      let set = checked?;
      let name = caller_order.join(", ");
      let token = new_token();
      let first_channel = set.all().next().expect("one key at least").channel.clone();
      let clean_up = {
        let (multi, set, token) = (multi.clone(), set.clone(), token.clone());
        async move {
          let _ = multi.release_stored(&set, &token).await;
        }
      };
      let granted = wait_for_grant(
        &multi.engine,
        &name,
        cancel,
        options.wait,
        &first_channel,
        || multi.try_acquire(&set, &token, options.lease_ms(), Take::Fenced),
        clean_up,
      )
      .await?;
      Ok(multi.hold(set, &caller_order, token, &options, granted, on_lost))
    }
  }

  /// The first attempt of an acquire, for the event-loop path: `None` when this acquire waits
  /// on the native path from the start (keys over several slots, fair, a single try, bad
  /// input, a closed client).
  pub fn first_attempt(
    self: &Arc<Self>,
    keys: &[String],
    options: AcquireOptions,
    on_lost: LostCallback,
  ) -> Option<Box<dyn FirstAttempt>> {
    let set = self.key_set(keys).ok()?;
    let eligible = set.groups.len() == 1
      && !options.fair
      && options.wait != Some(Duration::ZERO)
      && self.engine.ensure_open().is_ok()
      && self.host().is_ok();
    eligible.then(|| {
      Box::new(FirstKeys {
        multi: self.clone(),
        set,
        caller_order: keys.to_vec(),
        token: new_token(),
        options,
        on_lost,
      }) as Box<dyn FirstAttempt>
    })
  }

  fn hold(
    self: &Arc<Self>,
    set: KeySet,
    caller_order: &[String],
    token: String,
    options: &AcquireOptions,
    (fences, valid_until): Taken,
    on_lost: LostCallback,
  ) -> Arc<HeldLock> {
    // The fences come in the order the keys were taken; the caller gets its own order.
    let by_name: std::collections::HashMap<&String, i64> = set.names.iter().zip(fences).collect();
    let parts: Vec<(String, i64)> = caller_order
      .iter()
      .map(|name| (name.clone(), by_name[name]))
      .collect();
    let grant = Grant {
      token: token.clone(),
      fence: parts.iter().map(|(_, fence)| *fence).max().unwrap_or(0),
      parts,
      ttl_ms: options.ttl_ms,
      valid_until,
      watchdog: options.watchdog,
      max_hold: options.max_hold,
    };
    let hold = Box::new(MultiHold {
      multi: self.clone(),
      set,
      token,
    });
    HeldLock::start(
      self.engine.clone(),
      hold,
      grant,
      caller_order.join(", "),
      on_lost,
    )
  }

  /// Takes the slot groups in order; on a busy group, gives back the groups taken before it.
  fn try_acquire<'a>(
    &'a self,
    set: &'a KeySet,
    token: &'a str,
    lease_ms: u64,
    take: Take,
  ) -> BoxFuture<'a, Result<Attempt<Taken>>> {
    Box::pin(async move {
      let host = self.host()?;
      let sent = Instant::now();
      let mut fences = Vec::new();
      for (index, group) in set.groups.iter().enumerate() {
        let reply: Vec<i64> = host.run(&take.call(group, token, lease_ms)).await?;
        match reply.as_slice() {
          [1, taken @ ..] if taken.len() == take.fences(group) => fences.extend_from_slice(taken),
          [0, busy_index, holder_ttl_ms] => {
            if index > 0 {
              self.release_groups(&set.groups[..index], token).await?;
            }
            let busy = usize::try_from(*busy_index - 1)
              .ok()
              .and_then(|at| group.get(at))
              .ok_or_else(|| unexpected(host))?;
            return Ok(Attempt::BusyOn(
              recheck_after(Some(*holder_ttl_ms)),
              busy.channel.clone(),
            ));
          }
          _ => return Err(unexpected(host)),
        }
      }
      match self.engine.lease_until(sent, lease_ms) {
        Some(until) => Ok(Attempt::Taken((fences, until))),
        None => {
          self.release_stored(set, token).await?;
          Ok(Attempt::Busy(Duration::ZERO))
        }
      }
    })
  }

  /// Releases the keys of `groups` that `token` holds, one script per slot group (each key as
  /// a single lock's release, so that its waiters are told); true if it held all of them.
  async fn release_groups(&self, groups: &[Vec<LockKeys>], token: &str) -> Result<bool> {
    let host = self.host()?;
    let released = join_all(groups.iter().map(|group| {
      let call = release_call(group, token, Wake::Waiters);
      async move {
        let released: i64 = host.run(&call).await?;
        Ok::<bool, Error>(released == group.len() as i64)
      }
    }))
    .await;
    let mut all = true;
    for outcome in released {
      all &= outcome?;
    }
    Ok(all)
  }

  /// Releases every key of `set` that `token` holds (each with the single lock's release, so
  /// that its waiters are told); true if it held all of them.
  async fn release_stored(&self, set: &KeySet, token: &str) -> Result<bool> {
    self.release_groups(&set.groups, token).await
  }

  async fn extend_stored(&self, set: &KeySet, token: &str, ttl_ms: u64) -> Result<Option<Instant>> {
    let host = self.host()?;
    let sent = Instant::now();
    let renewed = join_all(set.groups.iter().map(|group| {
      let keys: Vec<&str> = group.iter().map(|keys| keys.lock.as_str()).collect();
      async move {
        host
          .eval::<i64>(EXTEND.script(), &keys, &[&token, &ttl_ms])
          .await
      }
    }))
    .await;
    for outcome in renewed {
      if outcome? != 1 {
        return Ok(None);
      }
    }
    Ok(self.engine.lease_until(sent, ttl_ms))
  }
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key
/// without one, modulo 16384.
fn cluster_slot(key: &str) -> u16 {
  let hashed = key
    .find('{')
    .and_then(|open| {
      let rest = &key[open + 1..];
      rest
        .find('}')
        .filter(|length| *length > 0)
        .map(|length| &rest[..length])
    })
    .unwrap_or(key);
  crc16::State::<crc16::XMODEM>::calculate(hashed.as_bytes()) % 16384
}

fn unexpected(host: &Host) -> Error {
  Error::new(
    ErrorKind::Redis,
    format!(
      "{}: unexpected reply to the multi-key acquire script",
      host.label()
    ),
  )
}

/// A multi-key lock held through a handle, as the watchdog renews and releases it.
struct MultiHold {
  multi: Arc<MultiLock>,
  set: KeySet,
  token: String,
}

impl Renewal for MultiHold {
  fn renew(&self, ttl_ms: u64) -> BoxFuture<'_, Result<Option<Instant>>> {
    Box::pin(self.multi.extend_stored(&self.set, &self.token, ttl_ms))
  }

  fn release(&self) -> BoxFuture<'_, Result<bool>> {
    Box::pin(self.multi.release_stored(&self.set, &self.token))
  }

  fn as_any(&self) -> &dyn std::any::Any {
    self
  }

  fn has_release_call(&self) -> bool {
    self.set.groups.len() == 1
  }

  fn release_call(&self) -> Option<ReleaseCall> {
    match self.set.groups.as_slice() {
      [group] => Some(ReleaseCall {
        call: release_call(group, &self.token, Wake::Waiters),
        all_held: group.len() as i64,
      }),
      _ => None,
    }
  }
}

/// What taking one slot group hands out besides the token: a fence per key (a handle's
/// grant), or nothing (`lock`, which gives a token only, as a single key's `lock` does).
#[derive(Debug, Clone, Copy)]
enum Take {
  Fenced,
  Plain,
}

impl Take {
  fn call(self, group: &[LockKeys], token: &str, lease_ms: u64) -> ScriptCall {
    let args = vec![token.to_owned(), lease_ms.to_string()];
    match self {
      Take::Fenced => ScriptCall {
        lua: &ACQUIRE,
        keys: group
          .iter()
          .flat_map(|keys| [keys.lock.clone(), keys.fence.clone()])
          .collect(),
        args,
      },
      Take::Plain => ScriptCall {
        lua: &LOCK,
        keys: group.iter().map(|keys| keys.lock.clone()).collect(),
        args,
      },
    }
  }

  /// How many fences a grant of `group` carries.
  fn fences(self, group: &[LockKeys]) -> usize {
    match self {
      Take::Fenced => group.len(),
      Take::Plain => 0,
    }
  }
}

/// A `lock` on the event loop's sockets (keys in one slot group).
struct LockCall {
  multi: Arc<MultiLock>,
  set: KeySet,
  token: String,
  ttl_ms: u64,
}

impl OneCall for LockCall {
  fn call(&self) -> ScriptCall {
    Take::Plain.call(&self.set.groups[0], &self.token, self.ttl_ms)
  }

  fn answer(&self, reply: &Reply, sent: Instant) -> Result<(Answer, bool)> {
    let engine = &self.multi.engine;
    let answer = match integers(reply).as_deref() {
      Some([1, ..]) => match engine.lease_until(sent, self.ttl_ms) {
        Some(_) => (Answer::Token(Some(self.token.clone())), false),
        // Taken with no time left: given back, and busy as far as the caller knows.
        None => (Answer::Token(None), true),
      },
      Some([0, ..]) => (Answer::Token(None), false),
      _ => {
        return Err(Error::new(
          ErrorKind::Redis,
          "unexpected reply to the multi-key acquire script",
        ))
      }
    };
    engine.stats().record(match &answer.0 {
      Answer::Token(Some(_)) => Event::Locked,
      _ => Event::Busy,
    });
    Ok(answer)
  }

  fn undo(&self) -> Option<ScriptCall> {
    Some(release_call(
      &self.set.groups[0],
      &self.token,
      Wake::Waiters,
    ))
  }
}

/// An `unlock` on the event loop's sockets (keys in one slot group).
struct UnlockCall {
  multi: Arc<MultiLock>,
  set: KeySet,
  token: String,
}

impl OneCall for UnlockCall {
  fn call(&self) -> ScriptCall {
    release_call(&self.set.groups[0], &self.token, Wake::Waiters)
  }

  fn answer(&self, reply: &Reply, _sent: Instant) -> Result<(Answer, bool)> {
    let Reply::Integer(released) = reply else {
      return Err(Error::new(
        ErrorKind::Redis,
        "unexpected reply to the release script",
      ));
    };
    let all = *released == self.set.groups[0].len() as i64;
    if all {
      self.multi.engine.stats().record(Event::Unlocked);
    }
    Ok((Answer::Flag(all), false))
  }

  fn undo(&self) -> Option<ScriptCall> {
    None
  }
}

/// An acquire's first attempt on the event loop's sockets (keys in one slot group).
struct FirstKeys {
  multi: Arc<MultiLock>,
  set: KeySet,
  caller_order: Vec<String>,
  token: String,
  options: AcquireOptions,
  on_lost: LostCallback,
}

impl FirstAttempt for FirstKeys {
  fn call(&self) -> ScriptCall {
    Take::Fenced.call(&self.set.groups[0], &self.token, self.options.lease_ms())
  }

  fn decide(self: Box<Self>, reply: &Reply, sent: Instant) -> Decision {
    let count = self.set.groups[0].len();
    match integers(reply).as_deref() {
      Some([1, fences @ ..]) if fences.len() == count => {
        let Some(until) = self.multi.engine.lease_until(sent, self.options.lease_ms()) else {
          return Decision::NotHeld(self);
        };
        self.multi.engine.stats().record(Event::Acquired);
        let fences = fences.to_vec();
        let FirstKeys {
          multi,
          set,
          caller_order,
          token,
          options,
          on_lost,
        } = *self;
        Decision::Held(multi.hold(
          set,
          &caller_order,
          token,
          &options,
          (fences, until),
          on_lost,
        ))
      }
      _ => Decision::NotHeld(self),
    }
  }

  fn undo(&self) -> ScriptCall {
    release_call(&self.set.groups[0], &self.token, Wake::Waiters)
  }
}

#[cfg(test)]
mod tests {
  use super::cluster_slot;

  #[test]
  fn slots_match_redis_cluster() {
    // Values from CLUSTER KEYSLOT.
    assert_eq!(cluster_slot("foo"), 12182);
    assert_eq!(
      cluster_slot("{user1000}.following"),
      cluster_slot("user1000")
    );
    assert_eq!(cluster_slot("{}.x"), cluster_slot("{}.x"));
    assert_eq!(cluster_slot("123456789"), 0x31C3);
  }
}

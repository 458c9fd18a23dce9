//! The Lua scripts and the names of the keys they touch.
//!
//! A lock key's value is always just the holder's token, set with `SET NX PX`, so relock and
//! other Redis lock clients exclude each other on the same key. Anything else relock keeps
//! (fencing counter, fair queue) lives in side keys in the same hash slot as the lock key.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::engine::host::Host;
use crate::engine::script::{Lua, ScriptCall};
use crate::error::Result;

pub const ACQUIRE_LUA: &str = include_str!("scripts/acquire.lua");
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_LUA));
pub static ACQUIRE_FAIR: LazyLock<Script> =
  LazyLock::new(|| Script::new(include_str!("scripts/acquire_fair.lua")));
pub const EXTEND_LUA: &str = include_str!("scripts/extend.lua");
pub static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
pub static INSPECT: LazyLock<Script> =
  LazyLock::new(|| Script::new(include_str!("scripts/inspect.lua")));
pub static LOCK_KINDS: LazyLock<Script> =
  LazyLock::new(|| Script::new(include_str!("scripts/lock_kinds.lua")));
pub static RAISE_FENCE: LazyLock<Script> =
  LazyLock::new(|| Script::new(include_str!("scripts/raise_fence.lua")));
pub const RELEASE_LUA: &str = include_str!("scripts/release.lua");
/// Releases one lock, or every lock of a multi-key lock (four keys per lock).
pub static RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::new(RELEASE_LUA));

/// A fair waiter that has not refreshed its place for this long is dropped from the queue, by
/// Redis's clock; a lock handed over to a waiter starts with a lease no longer than this.
pub const FAIR_LIVENESS: Duration = Duration::from_millis(3000);

/// Whether a release tells waiters that the lock became free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
  Waiters,
  /// Undoing an attempt that never held the lock on a majority: nobody waited for it.
  Nobody,
}

impl Wake {
  /// The release script's ARGV[3].
  pub fn flag(self) -> &'static str {
    match self {
      Wake::Waiters => "1",
      Wake::Nobody => "0",
    }
  }
}

/// The side keys and channel that belong to one lock key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKeys {
  pub lock: String,
  pub queue: String,
  pub waiters: String,
  pub fence: String,
  pub channel: String,
}

impl LockKeys {
  pub fn new(key: &str) -> LockKeys {
    let base = slot_preserving_base(key);
    // `{x}`, with no tag inside, has the base of `x`. A release hands the lock to the head of
    // the key's fair queue, so the two must never share a queue: `{x}` gets its own. Sharing
    // the fence counter and the channel is safe (fences still only grow; a hand-over message
    // names the waiter's token, and only a queue of the key's own hands over).
    let own = own_suffix(key);
    LockKeys {
      lock: key.to_owned(),
      queue: side_key(&base, &["queue", own]),
      waiters: side_key(&base, &["waiters", own]),
      fence: LockKeys::fence_of(&base),
      channel: LockKeys::channel_of(&base),
    }
  }

  /// The fence counter of the keys with `base`, which a read-write lock on the key shares.
  pub(crate) fn fence_of(base: &str) -> String {
    side_key(base, &["fence"])
  }

  /// The channel of the keys with `base`, which a read-write lock on the key shares.
  pub(crate) fn channel_of(base: &str) -> String {
    side_key(base, &["released"])
  }

  /// True for the side keys relock keeps next to lock keys.
  pub fn is_side_key(key: &str) -> bool {
    let key = key.strip_suffix(OWN).unwrap_or(key);
    [":relock:queue", ":relock:waiters", ":relock:fence"]
      .iter()
      .any(|suffix| key.ends_with(suffix))
  }

  /// Keys in the order the release and fair-acquire scripts declare them.
  pub fn all(&self) -> [&str; 4] {
    [&self.lock, &self.queue, &self.waiters, &self.fence]
  }

  /// Runs the release script on `host`: 1 if `token` held the lock there and no longer does.
  pub async fn release_on(&self, host: &Host, token: &str, wake: Wake) -> Result<i64> {
    host
      .run(&release_call(std::slice::from_ref(self), token, wake))
      .await
  }
}

/// The release of `locks` held by `token`, as one script call (its reply: how many were held).
pub fn release_call(locks: &[LockKeys], token: &str, wake: Wake) -> ScriptCall {
  let mut args = vec![
    token.to_owned(),
    FAIR_LIVENESS.as_millis().to_string(),
    wake.flag().to_owned(),
  ];
  args.extend(locks.iter().map(|keys| keys.channel.clone()));
  ScriptCall {
    lua: &RELEASE,
    keys: locks
      .iter()
      .flat_map(|keys| keys.all().map(str::to_owned))
      .collect(),
    args,
  }
}

/// A prefix for side keys that hashes to the same Redis Cluster slot as `key`.
///
/// Cluster hashes only the part between the first `{` and the next `}` when that part is not
/// empty. A key that already has such a tag keeps it as a prefix; any other key becomes the tag
/// itself by being wrapped in braces.
pub(crate) fn slot_preserving_base(key: &str) -> String {
  if has_hash_tag(key) {
    key.to_owned()
  } else {
    let mut base = String::with_capacity(key.len() + 2);
    base.push('{');
    base.push_str(key);
    base.push('}');
    base
  }
}

/// The name `base:relock:` followed by `parts`. Keys are named for every call, and joined by
/// hand they cost a fraction of what `format!` does.
pub(crate) fn side_key(base: &str, parts: &[&str]) -> String {
  const RELOCK: &str = ":relock:";
  let length = base.len() + RELOCK.len() + parts.iter().map(|part| part.len()).sum::<usize>();
  let mut key = String::with_capacity(length);
  key.push_str(base);
  key.push_str(RELOCK);
  for part in parts {
    key.push_str(part);
  }
  key
}

/// Ends the names of side keys that a key `{x}` must not share with `x` (no side key name of
/// any other key ends so).
pub(crate) const OWN: &str = ":own";

/// What the side keys of `key` that hold state of its own end with: `OWN` for `{x}` (whose
/// base is that of `x`), else nothing.
pub(crate) fn own_suffix(key: &str) -> &'static str {
  if braced_alone(key) {
    OWN
  } else {
    ""
  }
}

/// True for `{x}` where `x` has no tag of its own: its base is the one `x` gets by wrapping.
fn braced_alone(key: &str) -> bool {
  key
    .strip_prefix('{')
    .and_then(|rest| rest.strip_suffix('}'))
    .is_some_and(|inner| !has_hash_tag(inner) && has_hash_tag(key))
}

fn has_hash_tag(key: &str) -> bool {
  match key.find('{') {
    Some(open) => matches!(key[open + 1..].find('}'), Some(length) if length > 0),
    None => false,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn side_keys_share_the_hash_slot() {
    let keys = LockKeys::new("order:42");
    assert_eq!(keys.lock, "order:42");
    assert_eq!(keys.fence, "{order:42}:relock:fence");
    assert_eq!(keys.queue, "{order:42}:relock:queue");

    let tagged = LockKeys::new("shop{7}:order:42");
    assert_eq!(tagged.fence, "shop{7}:order:42:relock:fence");
    assert_eq!(tagged.channel, "shop{7}:order:42:relock:released");

    // An empty tag does not count: the whole key is hashed, so it is wrapped.
    assert_eq!(LockKeys::new("a{}b").waiters, "{a{}b}:relock:waiters");
  }

  #[test]
  fn a_braced_key_has_a_fair_queue_of_its_own() {
    // `{x}` and `x` share a base (and so the fence counter and the channel), never a queue.
    for (plain, braced) in [("edge", "{edge}"), ("{}", "{{}}"), ("a}", "{a}}")] {
      let (plain, braced) = (LockKeys::new(plain), LockKeys::new(braced));
      assert_eq!(plain.fence, braced.fence);
      assert_ne!(plain.queue, braced.queue);
      assert_ne!(plain.waiters, braced.waiters);
      assert!(LockKeys::is_side_key(&braced.queue) && LockKeys::is_side_key(&braced.waiters));
    }
    assert_eq!(LockKeys::new("{edge}").queue, "{edge}:relock:queue:own");
    // A key with a tag and more around it has a base no wrapped key can have.
    assert_eq!(LockKeys::new("{7}:order").queue, "{7}:order:relock:queue");
    assert_eq!(LockKeys::new("{a{b}c}").queue, "{a{b}c}:relock:queue");
  }

  #[test]
  fn scripts_use_only_declared_keys() {
    for source in [
      include_str!("scripts/acquire.lua"),
      include_str!("scripts/acquire_fair.lua"),
      include_str!("scripts/extend.lua"),
      include_str!("scripts/release.lua"),
      include_str!("scripts/raise_fence.lua"),
      include_str!("scripts/inspect.lua"),
      include_str!("scripts/lock_kinds.lua"),
      include_str!("../semaphore/scripts/prelude.lua"),
      include_str!("../semaphore/scripts/acquire.lua"),
      include_str!("../semaphore/scripts/release.lua"),
      include_str!("../semaphore/scripts/release_held.lua"),
      include_str!("../semaphore/scripts/extend.lua"),
      include_str!("../semaphore/scripts/state.lua"),
      include_str!("../rwlock/scripts/prelude.lua"),
      include_str!("../rwlock/scripts/read.lua"),
      include_str!("../rwlock/scripts/write.lua"),
      include_str!("../rwlock/scripts/release.lua"),
      include_str!("../rwlock/scripts/release_read.lua"),
      include_str!("../rwlock/scripts/release_write.lua"),
      include_str!("../rwlock/scripts/extend.lua"),
      include_str!("../rwlock/scripts/downgrade.lua"),
      include_str!("../rwlock/scripts/upgrade.lua"),
      include_str!("../rwlock/scripts/state.lua"),
      include_str!("../rwlock/scripts/live_readers.lua"),
      include_str!("../multikey/scripts/acquire.lua"),
      include_str!("../multikey/scripts/extend.lua"),
      include_str!("../multikey/scripts/lock.lua"),
    ] {
      for line in source
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
      {
        if let Some(call) = line.find("redis.call('") {
          let args = &line[call..];
          let first_arg = args.split(',').nth(1).map(str::trim).unwrap_or("");
          assert!(
            first_arg.is_empty()
              || first_arg.starts_with("KEYS[")
              || first_arg.starts_with("ARGV["),
            "script touches an undeclared key: {line}"
          );
        }
      }
    }
  }
}

//! Lua scripts as both transports use them: redis-rs's `Script` (EVALSHA, loaded on NOSCRIPT)
//! for the tokio path, and the source with its SHA for the event-loop path, which writes the
//! command itself.

use std::sync::Arc;
use std::time::Instant;

use redis::Script;

use super::resp::Reply;
use super::watchdog::HeldLock;
use crate::error::Result;

pub struct Lua {
  source: String,
  script: Script,
}

impl Lua {
  pub fn new(source: impl Into<String>) -> Lua {
    let source = source.into();
    Lua {
      script: Script::new(&source),
      source,
    }
  }

  /// A script made of a shared prelude (helper functions) and its own body.
  pub fn with_prelude(prelude: &str, body: &str) -> Lua {
    Lua::new(format!("{prelude}\n{body}"))
  }

  pub fn script(&self) -> &Script {
    &self.script
  }

  pub fn source(&self) -> &str {
    &self.source
  }

  pub fn sha(&self) -> &str {
    self.script.get_hash()
  }
}

/// One call of a script on the single host of a primitive, as the event-loop path sends it.
pub struct ScriptCall {
  pub lua: &'static Lua,
  pub keys: Vec<String>,
  pub args: Vec<String>,
}

/// A hold's release as one script call, and its reply when every part was held (1, or the
/// number of keys of a multi-key lock).
pub struct ReleaseCall {
  pub call: ScriptCall,
  pub all_held: i64,
}

/// The first attempt of a primitive's acquire, made on the event loop's sockets: one script
/// call whose reply grants the hold, or says it is busy (the wait then goes on natively).
pub trait FirstAttempt: Send {
  fn call(&self) -> ScriptCall;
  fn decide(self: Box<Self>, reply: &Reply, sent: Instant) -> Decision;
  /// Removes what a busy or failed attempt may have left (a place among the waiters, or a
  /// grant whose answer came too late), under the attempt's own token.
  fn undo(&self) -> ScriptCall;
}

/// What the reply to a first attempt decided.
pub enum Decision {
  Held(Arc<HeldLock>),
  /// Busy, granted with no time left, or a reply it cannot use: the attempt comes back so that
  /// what it may have left is undone, and the wait goes on natively (which reports any failure).
  NotHeld(Box<dyn FirstAttempt>),
}

/// The whole numbers of an array reply (`{1, fence, …}`), if it is one.
pub fn integers(reply: &Reply) -> Option<Vec<i64>> {
  match reply {
    Reply::Array(Some(items)) => items
      .iter()
      .map(|item| match item {
        Reply::Integer(number) => Some(*number),
        _ => None,
      })
      .collect(),
    _ => None,
  }
}

/// What a one-script call resolves to.
pub enum Answer {
  /// A token, or `None` when a key was held.
  Token(Option<String>),
  Flag(bool),
}

/// A whole call answered by one script on the primitive's single host (a multi-key `lock` or
/// `unlock`), made on the event loop's sockets.
pub trait OneCall: Send {
  fn call(&self) -> ScriptCall;
  /// The answer from the reply (the call's stats are counted here), and whether what the call
  /// took must be undone (taken, but with no time left).
  fn answer(&self, reply: &Reply, sent: Instant) -> Result<(Answer, bool)>;
  /// Undoes what the call may have taken, when its answer failed or came too late.
  fn undo(&self) -> Option<ScriptCall>;
}

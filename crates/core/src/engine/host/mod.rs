//! One Redis host: its multiplexed connection, its timeouts, and the mapping of redis-rs
//! failures to relock's error kinds. A host is one of three connection modes, each in its own
//! module (`standalone`, `sentinel`, `cluster`) over the shared `settings`.

mod cluster;
mod sentinel;
mod settings;
mod standalone;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{
  Client, ErrorKind as RedisKind, FromRedisValue, RedisError, Script, ServerErrorKind, ToRedisArgs,
};

use crate::engine::script::ScriptCall;
use crate::error::{Error, ErrorKind, Result};
use crate::options::{ClientOptions, LogCallback, LogLevel};
use cluster::ClusterSource;

pub struct Host {
  /// How the host is named in errors: address only, never credentials.
  label: String,
  /// The connection in use; `None` until the first call made one (Sentinel, Cluster).
  link: RwLock<Option<Link>>,
  /// Where the connection comes from.
  source: Source,
  manager_config: ConnectionManagerConfig,
  /// Outer bound of one call: a connect attempt plus one command. redis-rs enforces the two
  /// parts itself; this bound makes "never hangs" independent of how it does so.
  call_timeout: Duration,
  command_timeout: Duration,
  connect_timeout: Duration,
  /// Whether the host answered its last call, so that a change is logged once.
  health: AtomicU8,
  log: Option<LogCallback>,
  /// How to reach the host over a socket that the caller drives; only for plain (not TLS)
  /// hosts named by URL.
  endpoint: Option<Endpoint>,
}

/// A host as a socket of the caller's reaches it: its address, and the handshake it needs.
#[derive(Debug, Clone)]
pub struct Endpoint {
  pub address: Address,
  pub db: i64,
  pub username: Option<String>,
  pub password: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Address {
  Tcp { host: String, port: u16 },
  Unix { path: String },
}

const HEALTH_UNKNOWN: u8 = 0;
const HEALTH_UP: u8 = 1;
const HEALTH_DOWN: u8 = 2;

#[derive(Clone)]
struct Link {
  /// A client for a node of this host, for the subscription connection of release messages.
  client: Client,
  connection: Connection,
}

enum Source {
  /// A URL, connected to as it is.
  Direct,
  /// A master looked up through Sentinels; one lookup at a time, and whoever waited for it
  /// finds the new link in place.
  Sentinel(Box<tokio::sync::Mutex<SentinelClient>>),
  /// A Redis Cluster, reached through its seed nodes; one connection attempt at a time.
  Cluster(Box<ClusterSource>),
}

/// One host's connection: a single server's, or a cluster's (which routes each command to the
/// node that serves its key's slot, following MOVED and ASK).
#[derive(Clone)]
enum Connection {
  Single(ConnectionManager),
  Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
  fn req_packed_command<'a>(
    &'a mut self,
    command: &'a redis::Cmd,
  ) -> redis::RedisFuture<'a, redis::Value> {
    match self {
      Connection::Single(connection) => connection.req_packed_command(command),
      Connection::Cluster(connection) => connection.req_packed_command(command),
    }
  }

  fn req_packed_commands<'a>(
    &'a mut self,
    pipeline: &'a redis::Pipeline,
    offset: usize,
    count: usize,
  ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
    match self {
      Connection::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
      Connection::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
    }
  }

  fn get_db(&self) -> i64 {
    match self {
      Connection::Single(connection) => connection.get_db(),
      Connection::Cluster(connection) => connection.get_db(),
    }
  }
}

impl Host {
  fn new(
    label: String,
    link: Option<Link>,
    source: Source,
    manager_config: ConnectionManagerConfig,
    options: &ClientOptions,
  ) -> Host {
    Host {
      label,
      link: RwLock::new(link),
      source,
      manager_config,
      call_timeout: options.connect_timeout + options.command_timeout,
      command_timeout: options.command_timeout,
      connect_timeout: options.connect_timeout,
      health: AtomicU8::new(HEALTH_UNKNOWN),
      log: options.log.clone(),
      endpoint: None,
    }
  }

  /// Notes how a call went, and logs when the host starts or stops answering. A host that
  /// answers with an error (a script error, a wrong type) still answers.
  pub fn observe<T>(&self, outcome: Result<T>) -> Result<T> {
    let answered = match &outcome {
      Ok(_) => true,
      Err(error) => !matches!(
        error.kind(),
        ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Auth
      ),
    };
    let now = if answered { HEALTH_UP } else { HEALTH_DOWN };
    let before = self.health.swap(now, Ordering::Relaxed);
    if before != now {
      if let Some(log) = &self.log {
        match (&outcome, before) {
          (Err(error), _) => log(
            LogLevel::Warn,
            format!("{} stopped answering: {error}", self.label),
          ),
          (Ok(_), HEALTH_UNKNOWN) => log(LogLevel::Debug, format!("connected to {}", self.label)),
          _ => log(LogLevel::Info, format!("{} answers again", self.label)),
        }
      }
    }
    outcome
  }

  pub fn label(&self) -> &str {
    &self.label
  }

  pub fn endpoint(&self) -> Option<&Endpoint> {
    self.endpoint.as_ref()
  }

  /// The error of a call that had no answer in time, worded as every connection mode words it.
  pub fn timed_out(&self) -> Error {
    Error::new(
      ErrorKind::Timeout,
      format!(
        "{}: no answer within the timeout (connectTimeout {} ms, commandTimeout {} ms)",
        self.label,
        self.connect_timeout.as_millis(),
        self.command_timeout.as_millis()
      ),
    )
  }

  /// The error of a server's error reply (`-ERR ...`, `-NOAUTH ...`), named after this host.
  pub fn error_reply(&self, reply: &str) -> Error {
    let code = reply.split(' ').next().unwrap_or("");
    let kind = kind_of_reply(code).unwrap_or(ErrorKind::Redis);
    let detail = match code {
      "NOPERM" => {
        format!("permission denied: the ACL user may not run what this call needs ({reply})")
      }
      "NOAUTH" | "WRONGPASS" => format!("authentication failed: {reply}"),
      "LOADING" => format!("{LOADING}: {reply}"),
      _ => reply.to_owned(),
    };
    Error::new(kind, format!("{}: {detail}", self.label))
  }

  /// The client of the current connection, if there is one yet.
  pub fn client(&self) -> Option<Client> {
    self.current().map(|link| link.client)
  }

  fn current(&self) -> Option<Link> {
    self.link.read().expect("link lock").clone()
  }

  /// The connection to send on, without cloning the rest of the link (this is every call's
  /// path).
  fn current_connection(&self) -> Option<Connection> {
    self
      .link
      .read()
      .expect("link lock")
      .as_ref()
      .map(|link| link.connection.clone())
  }

  async fn connection(&self) -> Result<Connection> {
    if let Some(connection) = self.current_connection() {
      return Ok(connection);
    }
    // Boxed: the Sentinel lookup and the cluster connection are large futures, and every call
    // awaits this function.
    match &self.source {
      Source::Cluster(_) => Box::pin(self.connect_cluster()).await?,
      _ => Box::pin(self.find_master()).await?,
    }
    self.current_connection().ok_or_else(|| {
      Error::new(
        ErrorKind::Connection,
        format!("{}: no connection could be made", self.label),
      )
    })
  }

  /// `SET key token NX PX ttl`: true if the key was free and is now ours.
  pub async fn set_if_absent(&self, key: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    let mut command = redis::cmd("SET");
    command.arg(key).arg(token).arg("NX").arg("PX").arg(ttl_ms);
    let reply: Option<String> = self.query(&command).await?;
    Ok(reply.is_some())
  }

  /// Sends one command and reads its reply.
  pub async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T> {
    let outcome = match self.connection().await {
      Ok(mut connection) => {
        self
          .bounded(Box::pin(command.query_async(&mut connection)))
          .await
      }
      Err(error) => Err(error),
    };
    self.observe(outcome)
  }

  /// Runs one script call (its keys and arguments as the event-loop path sends them).
  pub async fn run<T: FromRedisValue>(&self, call: &ScriptCall) -> Result<T> {
    let keys: Vec<&str> = call.keys.iter().map(String::as_str).collect();
    let args: Vec<&dyn ToRedisArgsRef> = call
      .args
      .iter()
      .map(|arg| arg as &dyn ToRedisArgsRef)
      .collect();
    self.eval(call.lua.script(), &keys, &args).await
  }

  /// Runs `script` by EVALSHA; redis-rs loads it and retries once when the server answers
  /// NOSCRIPT (after a restart or SCRIPT FLUSH).
  pub async fn eval<T: FromRedisValue>(
    &self,
    script: &Script,
    keys: &[&str],
    args: &[&dyn ToRedisArgsRef],
  ) -> Result<T> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
      invocation.key(*key);
    }
    for arg in args {
      arg.push_onto(&mut invocation);
    }
    let outcome = match self.connection().await {
      Ok(mut connection) => {
        self
          .bounded(Box::pin(invocation.invoke_async(&mut connection)))
          .await
      }
      Err(error) => Err(error),
    };
    self.observe(outcome)
  }

  /// Bounds one Redis call in time. Calls come boxed: a Redis call's future is large (script
  /// loading on NOSCRIPT, reconnection), and every future awaiting it inline would carry that
  /// size through each move.
  async fn bounded<T>(
    &self,
    call: Pin<Box<impl Future<Output = redis::RedisResult<T>>>>,
  ) -> Result<T> {
    let failure = match tokio::time::timeout(self.call_timeout, call).await {
      Ok(Ok(value)) => return Ok(value),
      Ok(Err(error)) => self.describe(&error),
      Err(_) => Error::new(
        ErrorKind::Timeout,
        format!(
          "{}: no answer within {} ms",
          self.label,
          self.call_timeout.as_millis()
        ),
      ),
    };
    if matches!(self.source, Source::Sentinel(_)) {
      Box::pin(self.follow_failover(&failure)).await;
    }
    Err(failure)
  }

  /// Maps a redis-rs error to a relock error that names this host.
  pub fn describe(&self, error: &RedisError) -> Error {
    let kind = classify(error);
    let detail = match kind {
      ErrorKind::Timeout => return self.timed_out(),
      ErrorKind::Auth if error.kind() == RedisKind::Server(ServerErrorKind::NoPerm) => format!(
        "permission denied: the ACL user may not run what this call needs ({})",
        error.detail().unwrap_or("")
      ),
      ErrorKind::Auth => format!("authentication failed: {}", error.detail().unwrap_or("")),
      ErrorKind::Connection if error.kind() == RedisKind::Parse => {
        "the server answered, but not in the Redis protocol: not a Redis server (check the host and port)".to_owned()
      }
      ErrorKind::Connection if error.code() == Some("LOADING") => format!("{LOADING}: {error}"),
      _ => error.to_string(),
    };
    Error::new(
      kind,
      format!("{}: {}", self.label, detail.trim_end_matches(": ")),
    )
  }
}

/// Script arguments of mixed types, without boxing each one.
pub trait ToRedisArgsRef: Sync {
  fn push_onto(&self, invocation: &mut redis::ScriptInvocation<'_>);
}

impl<T: ToRedisArgs + Sync> ToRedisArgsRef for T {
  fn push_onto(&self, invocation: &mut redis::ScriptInvocation<'_>) {
    invocation.arg(self);
  }
}

const LOADING: &str = "still loading its data set after a start, and serves no call until done";

/// The kind of failure an error reply means, by its code, where the code says more than that
/// Redis refused the call.
fn kind_of_reply(code: &str) -> Option<ErrorKind> {
  match code {
    "NOAUTH" | "WRONGPASS" | "NOPERM" => Some(ErrorKind::Auth),
    // Up, but not serving yet: to the caller, the same as a host that is down for a moment.
    "LOADING" => Some(ErrorKind::Connection),
    _ => None,
  }
}

fn classify(error: &RedisError) -> ErrorKind {
  if error.is_timeout() {
    return ErrorKind::Timeout;
  }
  if let Some(kind) = error.code().and_then(kind_of_reply) {
    return kind;
  }
  if error.kind() == RedisKind::AuthenticationFailed {
    return ErrorKind::Auth;
  }
  match error.kind() {
    RedisKind::Io | RedisKind::Parse => ErrorKind::Connection,
    RedisKind::Server(ServerErrorKind::NoPerm) => ErrorKind::Auth,
    _ => ErrorKind::Redis,
  }
}

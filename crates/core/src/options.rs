use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// Settings of a client, shared by every call made through it.
#[derive(Clone)]
pub struct ClientOptions {
  /// Bound on establishing a connection to one host.
  pub connect_timeout: Duration,
  /// Bound on one Redis round trip.
  pub command_timeout: Duration,
  /// Share of the ttl assumed lost to clock drift between hosts (Redlock's validity margin).
  pub drift_factor: f64,
  /// How `lock` retries a key that is busy or a quorum that failed.
  pub retry: RetryPolicy,
  /// Credentials that take precedence over those in the URLs.
  pub username: Option<String>,
  pub password: Option<String>,
  /// Certificates for `rediss://` hosts.
  pub tls: Option<TlsOptions>,
  /// Wait for replicas to copy each new lock before relying on it.
  pub replica_ack: Option<ReplicaAck>,
  /// The master name to look up through Sentinel; the URLs are then the Sentinels' addresses.
  pub sentinel: Option<String>,
  /// The URLs are seed nodes of one Redis Cluster.
  pub cluster: bool,
  /// Put before every key relock writes (lock keys, side keys, channels), so that several
  /// applications can share one Redis; callers never see it.
  pub prefix: String,
  /// Told of problems that do not fail a call (a replica shortfall under the `warn` policy).
  pub on_notice: Option<NoticeCallback>,
  /// Told what the client does that a caller does not see: connections lost and regained,
  /// retries, failovers, renewals that failed, locks lost.
  pub log: Option<LogCallback>,
}

/// Receives problems that do not fail a call.
pub type NoticeCallback = Arc<dyn Fn(&Error) + Send + Sync>;

/// Receives log lines.
pub type LogCallback = Arc<dyn Fn(LogLevel, String) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
  Debug,
  Info,
  Warn,
  Error,
}

impl LogLevel {
  pub fn name(self) -> &'static str {
    match self {
      LogLevel::Debug => "debug",
      LogLevel::Info => "info",
      LogLevel::Warn => "warn",
      LogLevel::Error => "error",
    }
  }
}

impl ClientOptions {
  /// Logs a line, made only when somebody listens.
  pub fn log(&self, level: LogLevel, line: impl FnOnce() -> String) {
    if let Some(log) = &self.log {
      log(level, line());
    }
  }
}

/// After taking a lock, wait (`WAIT`) until `replicas` replicas of each host copied it, for at
/// most `timeout`. Asynchronous replication can otherwise lose an acknowledged lock in a
/// failover.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaAck {
  pub replicas: u64,
  pub timeout: Duration,
  pub policy: ReplicaPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaPolicy {
  /// Release the lock and fail the call with [`ErrorKind::Replication`](crate::ErrorKind).
  Fail,
  /// Keep the lock and report the shortfall through `on_notice`.
  Warn,
}

/// TLS settings for `rediss://` hosts; certificates and keys in PEM.
#[derive(Clone, Default)]
pub struct TlsOptions {
  /// Trust this CA instead of the system's.
  pub ca: Option<String>,
  /// Client certificate and key, for servers that require them (`tls-auth-clients yes`).
  pub cert: Option<String>,
  pub key: Option<String>,
  /// Accept any server certificate and host name: no protection against interception.
  pub dangerously_accept_any_certificate: bool,
}

impl std::fmt::Debug for TlsOptions {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("TlsOptions")
      .field("ca", &self.ca.is_some())
      .field("cert", &self.cert.is_some())
      .field("key", &self.key.as_ref().map(|_| "<redacted>"))
      .field(
        "dangerously_accept_any_certificate",
        &self.dangerously_accept_any_certificate,
      )
      .finish()
  }
}

impl std::fmt::Debug for ClientOptions {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("ClientOptions")
      .field("connect_timeout", &self.connect_timeout)
      .field("command_timeout", &self.command_timeout)
      .field("drift_factor", &self.drift_factor)
      .field("retry", &self.retry)
      .field("username", &self.username)
      .field("password", &self.password.as_ref().map(|_| "<redacted>"))
      .field("tls", &self.tls)
      .field("replica_ack", &self.replica_ack)
      .field("sentinel", &self.sentinel)
      .field("cluster", &self.cluster)
      .finish()
  }
}

impl Default for ClientOptions {
  fn default() -> Self {
    ClientOptions {
      connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
      command_timeout: Duration::from_millis(DEFAULT_COMMAND_TIMEOUT_MS),
      drift_factor: DEFAULT_DRIFT_FACTOR,
      retry: RetryPolicy::default(),
      username: None,
      password: None,
      tls: None,
      replica_ack: None,
      sentinel: None,
      cluster: false,
      prefix: String::new(),
      on_notice: None,
      log: None,
    }
  }
}

pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;
pub const DEFAULT_RETRY_DELAY_MS: u64 = 100;
pub const DEFAULT_RETRY_JITTER_MS: u64 = 100;

/// Retries of `lock`. The default is a single attempt: `lock` answers at once.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
  /// Further attempts after the first one.
  pub count: u64,
  /// Pause between attempts.
  pub delay: Duration,
  /// Upper bound of a random extra pause added to `delay`, so that contenders spread out.
  pub jitter: Duration,
  /// Time budget for all attempts together; `None` leaves only `count` as the bound.
  pub budget: Option<Duration>,
}

impl Default for RetryPolicy {
  fn default() -> Self {
    RetryPolicy {
      count: 0,
      delay: Duration::from_millis(DEFAULT_RETRY_DELAY_MS),
      jitter: Duration::from_millis(DEFAULT_RETRY_JITTER_MS),
      budget: None,
    }
  }
}

impl RetryPolicy {
  /// A pause of `delay` plus up to `jitter`, drawn anew each time.
  pub fn pause(&self) -> Duration {
    let jitter_ms = self.jitter.as_millis() as u64;
    let extra = if jitter_ms == 0 {
      0
    } else {
      fastrand::u64(0..=jitter_ms)
    };
    self.delay + Duration::from_millis(extra)
  }
}

use std::fmt;

/// What went wrong, as a stable code that callers can branch on.
///
/// The strings returned by [`ErrorKind::code`] are part of the public API: the JS layer exposes
/// them as `error.code`, and the README lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
  /// A key, ttl, token or option that is not acceptable.
  InvalidArgument,
  /// A Redis URL that cannot be parsed or has an unknown scheme.
  InvalidUrl,
  /// No connection could be made to a Redis host (refused, unreachable, connect timeout).
  Connection,
  /// A Redis host accepted the connection but did not answer within `commandTimeout`.
  Timeout,
  /// The Redis host refused the credentials.
  Auth,
  /// The Redis host answered with an error.
  Redis,
  /// The client was closed before or during the call.
  Closed,
  /// Too many hosts failed for a majority of them to answer.
  NoQuorum,
  /// A majority took the lock, but the time left on it ran out before the answer came.
  ValidityExpired,
  /// A blocking acquire gave up after its `waitTimeout`.
  WaitTimeout,
  /// The lock is no longer held: it expired, was taken over, or its hosts lost it.
  LockLost,
  /// The requested combination of features cannot be offered with this configuration.
  Unsupported,
  /// The caller cancelled the call.
  Aborted,
  /// Fewer replicas than asked acknowledged a new lock (`replicaAck` with policy `fail`).
  Replication,
  /// A read lock could not become a write lock: other readers hold it.
  UpgradeRefused,
  /// A failure relock did not expect.
  Internal,
}

impl ErrorKind {
  pub fn code(self) -> &'static str {
    match self {
      ErrorKind::InvalidArgument => "ERR_RELOCK_INVALID_ARGUMENT",
      ErrorKind::InvalidUrl => "ERR_RELOCK_INVALID_URL",
      ErrorKind::Connection => "ERR_RELOCK_CONNECTION",
      ErrorKind::Timeout => "ERR_RELOCK_TIMEOUT",
      ErrorKind::Auth => "ERR_RELOCK_AUTH",
      ErrorKind::Redis => "ERR_RELOCK_REDIS",
      ErrorKind::Closed => "ERR_RELOCK_CLOSED",
      ErrorKind::NoQuorum => "ERR_RELOCK_NO_QUORUM",
      ErrorKind::ValidityExpired => "ERR_RELOCK_VALIDITY_EXPIRED",
      ErrorKind::WaitTimeout => "ERR_RELOCK_WAIT_TIMEOUT",
      ErrorKind::LockLost => "ERR_RELOCK_LOCK_LOST",
      ErrorKind::Unsupported => "ERR_RELOCK_UNSUPPORTED",
      ErrorKind::Aborted => "ABORT_ERR",
      ErrorKind::Replication => "ERR_RELOCK_REPLICATION",
      ErrorKind::UpgradeRefused => "ERR_RELOCK_UPGRADE_REFUSED",
      ErrorKind::Internal => "ERR_RELOCK_INTERNAL",
    }
  }
}

/// The one error type of the core. Its message never contains a password: hosts are always named
/// by their redacted label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
  kind: ErrorKind,
  message: String,
  /// The failure behind this one (a wait that timed out while its hosts failed, say).
  cause: Option<Box<Error>>,
}

impl Error {
  pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
    Error {
      kind,
      message: message.into(),
      cause: None,
    }
  }

  pub fn with_cause(mut self, cause: Error) -> Self {
    self.cause = Some(Box::new(cause));
    self
  }

  pub fn cause(&self) -> Option<&Error> {
    self.cause.as_deref()
  }

  pub fn invalid_argument(message: impl Into<String>) -> Self {
    Error::new(ErrorKind::InvalidArgument, message)
  }

  pub fn closed() -> Self {
    Error::new(ErrorKind::Closed, "the Redlock client is closed")
  }

  pub fn kind(&self) -> ErrorKind {
    self.kind
  }

  pub fn code(&self) -> &'static str {
    self.kind.code()
  }

  pub fn message(&self) -> &str {
    &self.message
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}: {}", self.kind.code(), self.message)
  }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

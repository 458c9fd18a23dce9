//! Options as callers give them (every field optional, times as numbers of milliseconds), and
//! the one place where their rules and defaults live: each `resolve` checks every field and
//! fills in what was left out.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::mutex::acquire::AcquireOptions;
use crate::options::{ClientOptions, ReplicaAck, ReplicaPolicy, RetryPolicy, TlsOptions};
use crate::semaphore::SemaphoreOptions;
use crate::validate;

/// An acquire's lease when none is given.
pub const DEFAULT_ACQUIRE_TTL_MS: u64 = 30_000;
/// How long an acquire waits when not told.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 10_000;
/// How long a new lock waits for its replicas when not told.
pub const DEFAULT_REPLICA_ACK_TIMEOUT_MS: f64 = 100.0;
/// The most replicas one acknowledgement may ask for.
pub const MAX_REPLICAS: u64 = 64;
/// The most permits a semaphore may have (exact as a JavaScript number).
pub const MAX_PERMITS: u64 = 1_000_000_000_000;

#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
  pub connect_timeout: Option<f64>,
  pub command_timeout: Option<f64>,
  pub drift_factor: Option<f64>,
  pub retry: RetrySettings,
  pub username: Option<String>,
  pub password: Option<String>,
  pub tls: Option<TlsSettings>,
  pub replica_ack: Option<ReplicaAckSettings>,
  /// The master name the Sentinels monitor.
  pub sentinel: Option<String>,
  pub cluster: Option<bool>,
  pub prefix: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RetrySettings {
  pub count: Option<f64>,
  pub delay: Option<f64>,
  pub jitter: Option<f64>,
  /// A budget for all retries of one call.
  pub timeout: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
  pub ca: Option<String>,
  pub cert: Option<String>,
  pub key: Option<String>,
  pub dangerously_accept_any_certificate: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct ReplicaAckSettings {
  pub replicas: f64,
  pub timeout: Option<f64>,
  /// `"fail"` (the default), `"warn"` or `"off"`.
  pub policy: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AcquireSettings {
  pub ttl: Option<f64>,
  /// `f64::INFINITY` waits without a limit.
  pub wait_timeout: Option<f64>,
  pub fair: Option<bool>,
  pub watchdog: Option<bool>,
  pub max_hold: Option<f64>,
}

/// A semaphore's acquire: `permits` of the semaphore, `count` of them for this caller
/// (default 1), and the acquire's own settings. (That `count` fits in `permits` is the
/// semaphore's own check, made for every caller.)
#[derive(Debug, Clone, Default)]
pub struct SemaphoreSettings {
  pub permits: f64,
  pub count: Option<f64>,
  pub acquire: AcquireSettings,
}

impl SemaphoreSettings {
  pub fn resolve(&self) -> Result<SemaphoreOptions> {
    let permits = validate::count("permits", self.permits, MAX_PERMITS)?;
    if permits == 0 {
      return Err(Error::invalid_argument("permits must be at least 1"));
    }
    let count = validate::count("options.permits", self.count.unwrap_or(1.0), MAX_PERMITS)?;
    if count == 0 {
      return Err(Error::invalid_argument(
        "options.permits must be at least 1",
      ));
    }
    Ok(SemaphoreOptions {
      permits,
      count,
      acquire: self.acquire.resolve()?,
    })
  }
}

impl ClientSettings {
  pub fn resolve(&self) -> Result<ClientOptions> {
    let defaults = ClientOptions::default();
    let millis = |name, value: Option<f64>, default: Duration| -> Result<Duration> {
      value.map_or(Ok(default), |v| {
        validate::positive_millis(name, v).map(Duration::from_millis)
      })
    };
    let connect_timeout = millis(
      "connectTimeout",
      self.connect_timeout,
      defaults.connect_timeout,
    )?;
    let command_timeout = millis(
      "commandTimeout",
      self.command_timeout,
      defaults.command_timeout,
    )?;
    let drift_factor = self.drift_factor.map_or(Ok(defaults.drift_factor), |v| {
      validate::fraction("driftFactor", v, 0.5)
    })?;
    let replica_ack = match &self.replica_ack {
      None => None,
      Some(ack) => ack.resolve(command_timeout)?,
    };
    let prefix = match &self.prefix {
      Some(prefix) => {
        validate::prefix(prefix)?;
        prefix.clone()
      }
      None => String::new(),
    };
    Ok(ClientOptions {
      connect_timeout,
      command_timeout,
      drift_factor,
      retry: self.retry.resolve(&defaults.retry)?,
      username: self.username.clone(),
      password: self.password.clone(),
      tls: self.tls.as_ref().map(|tls| TlsOptions {
        ca: tls.ca.clone(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        dangerously_accept_any_certificate: tls.dangerously_accept_any_certificate.unwrap_or(false),
      }),
      replica_ack,
      sentinel: self.sentinel.clone(),
      cluster: self.cluster.unwrap_or(false),
      prefix,
      on_notice: None,
      log: None,
    })
  }
}

impl RetrySettings {
  /// The retry policy these settings give, on top of `defaults` (the client's, for one call).
  pub fn resolve(&self, defaults: &RetryPolicy) -> Result<RetryPolicy> {
    let non_negative = |name, value: Option<f64>, default: Duration| -> Result<Duration> {
      value.map_or(Ok(default), |v| {
        validate::non_negative_millis(name, v).map(Duration::from_millis)
      })
    };
    Ok(RetryPolicy {
      count: self.count.map_or(Ok(defaults.count), |v| {
        validate::count("retryCount", v, 1_000_000)
      })?,
      delay: non_negative("retryDelay", self.delay, defaults.delay)?,
      jitter: non_negative("retryJitter", self.jitter, defaults.jitter)?,
      budget: match self.timeout {
        None => defaults.budget,
        Some(v) => Some(Duration::from_millis(validate::positive_millis(
          "retryTimeout",
          v,
        )?)),
      },
    })
  }
}

impl ReplicaAckSettings {
  /// `None` for the `off` policy.
  pub fn resolve(&self, command_timeout: Duration) -> Result<Option<ReplicaAck>> {
    let policy = match self.policy.as_deref().unwrap_or("fail") {
      "off" => return Ok(None),
      "fail" => ReplicaPolicy::Fail,
      "warn" => ReplicaPolicy::Warn,
      other => {
        return Err(Error::invalid_argument(format!(
          "replicaAck.policy must be 'fail', 'warn' or 'off', got '{other}'"
        )))
      }
    };
    let replicas = validate::count("replicaAck.replicas", self.replicas, MAX_REPLICAS)?;
    if replicas == 0 {
      return Err(Error::invalid_argument(
        "replicaAck.replicas must be at least 1",
      ));
    }
    let timeout = Duration::from_millis(validate::positive_millis(
      "replicaAck.timeout",
      self.timeout.unwrap_or(DEFAULT_REPLICA_ACK_TIMEOUT_MS),
    )?);
    if timeout >= command_timeout {
      return Err(Error::invalid_argument(format!(
        "replicaAck.timeout ({} ms) must be shorter than commandTimeout ({} ms)",
        timeout.as_millis(),
        command_timeout.as_millis()
      )));
    }
    Ok(Some(ReplicaAck {
      replicas,
      timeout,
      policy,
    }))
  }
}

impl AcquireSettings {
  pub fn resolve(&self) -> Result<AcquireOptions> {
    let ttl_ms = self
      .ttl
      .map_or(Ok(DEFAULT_ACQUIRE_TTL_MS), |v| validate::lease("ttl", v))?;
    let wait = match self.wait_timeout {
      None => Some(Duration::from_millis(DEFAULT_WAIT_TIMEOUT_MS)),
      Some(v) if v == f64::INFINITY => None,
      Some(v) => Some(Duration::from_millis(validate::non_negative_millis(
        "waitTimeout",
        v,
      )?)),
    };
    let max_hold = match self.max_hold {
      None => None,
      Some(v) => Some(Duration::from_millis(validate::lease("maxHold", v)?)),
    };
    Ok(AcquireOptions {
      ttl_ms,
      wait,
      fair: self.fair.unwrap_or(false),
      watchdog: self.watchdog.unwrap_or(true),
      max_hold,
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn defaults_fill_in_what_is_left_out() {
    let options = ClientSettings::default().resolve().unwrap();
    assert_eq!(options.connect_timeout, Duration::from_millis(2000));
    assert_eq!(options.retry.count, 0);
    let acquire = AcquireSettings::default().resolve().unwrap();
    assert_eq!(acquire.ttl_ms, DEFAULT_ACQUIRE_TTL_MS);
    assert_eq!(
      acquire.wait,
      Some(Duration::from_millis(DEFAULT_WAIT_TIMEOUT_MS))
    );
    assert!(acquire.watchdog && !acquire.fair);
  }

  #[test]
  fn every_rule_names_the_option() {
    let bad = ClientSettings {
      replica_ack: Some(ReplicaAckSettings {
        replicas: 1.0,
        timeout: Some(5000.0),
        policy: None,
      }),
      ..ClientSettings::default()
    };
    let error = bad.resolve().unwrap_err();
    assert!(error.message().contains("replicaAck.timeout"), "{error}");
    let error = AcquireSettings {
      ttl: Some(50.0),
      ..AcquireSettings::default()
    }
    .resolve()
    .unwrap_err();
    assert!(error.message().contains("ttl"), "{error}");
    let forever = AcquireSettings {
      wait_timeout: Some(f64::INFINITY),
      ..AcquireSettings::default()
    };
    assert_eq!(forever.resolve().unwrap().wait, None);
  }
}

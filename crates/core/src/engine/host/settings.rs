//! What every connection mode shares: URL parsing, credentials, TLS, timeouts and socket
//! options, and how a host is named without its password.

use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, ProtocolVersion};

use crate::error::{Error, ErrorKind, Result};
use crate::options::ClientOptions;

const SCHEMES: [&str; 4] = ["redis", "rediss", "unix", "redis+unix"];

pub(super) fn connection_settings(
  settings: redis::RedisConnectionInfo,
  options: &ClientOptions,
) -> redis::RedisConnectionInfo {
  let mut settings = settings
    .set_protocol(ProtocolVersion::RESP3)
    .set_lib_name("relock", env!("CARGO_PKG_VERSION"));
  if let Some(username) = &options.username {
    settings = settings.set_username(username);
  }
  if let Some(password) = &options.password {
    settings = settings.set_password(password);
  }
  settings
}

/// Every connection relock opens sends each request at once: with Nagle's algorithm on (the
/// socket default), a request written while another is unanswered waits for the ACK that rides
/// on the reply, so two calls in flight cost two round trips each. Keepalive probes notice a
/// peer that vanished without closing (a host powered off, a dropped NAT entry).
pub(super) fn tcp_settings() -> TcpSettings {
  TcpSettings::default().set_nodelay(true).set_keepalive(
    TcpKeepalive::new()
      .with_time(Duration::from_secs(30))
      .with_interval(Duration::from_secs(10)),
  )
}

pub(super) fn manager_config(options: &ClientOptions) -> ConnectionManagerConfig {
  ConnectionManagerConfig::new()
    .set_connection_timeout(Some(options.connect_timeout))
    .set_response_timeout(Some(options.command_timeout))
    // One attempt per connect: a failed attempt fails the calls waiting on it within
    // connectTimeout, and the next call starts a fresh attempt.
    .set_number_of_retries(0)
}

pub(super) fn open_client(
  info: redis::ConnectionInfo,
  options: &ClientOptions,
  label: &str,
) -> Result<Client> {
  if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
    // rustls needs one process-wide crypto provider; an error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
  }
  let tls = match (info.addr(), &options.tls) {
    (ConnectionAddr::TcpTls { .. }, Some(tls)) => tls,
    (_, None) => return Client::open(info).map_err(|e| invalid_url(label, &e.to_string())),
    (_, Some(_)) => {
      return Err(Error::invalid_argument(format!(
        "tls options were given, but {label} is not a rediss:// URL"
      )))
    }
  };
  if tls.dangerously_accept_any_certificate {
    let ConnectionAddr::TcpTls { host, port, .. } = info.addr().clone() else {
      unreachable!("matched above")
    };
    let info = info.set_addr(ConnectionAddr::TcpTls {
      host,
      port,
      insecure: true,
      tls_params: None,
    });
    return Client::open(info).map_err(|e| invalid_url(label, &e.to_string()));
  }
  let client_tls = match (&tls.cert, &tls.key) {
    (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
      client_cert: cert.as_bytes().to_vec(),
      client_key: key.as_bytes().to_vec(),
    }),
    (None, None) => None,
    _ => {
      return Err(Error::invalid_argument(
        "tls.cert and tls.key must be given together",
      ))
    }
  };
  let certificates = redis::TlsCertificates {
    client_tls,
    root_cert: tls.ca.as_ref().map(|ca| ca.as_bytes().to_vec()),
  };
  Client::build_with_tls(info, certificates).map_err(|e| {
    Error::invalid_argument(format!(
      "the tls certificates for {label} are unusable: {}",
      e.detail().unwrap_or(&e.to_string())
    ))
  })
}

pub(super) fn parse_url(url: &str) -> Result<redis::ConnectionInfo> {
  if url.contains('#') {
    return Err(invalid_url(
      url,
      "URL fragments are not accepted; to skip certificate checks, say so with the tls.dangerouslyAcceptAnyCertificate option",
    ));
  }
  let scheme = url.split_once("://").map(|(scheme, _)| scheme);
  match scheme {
    Some(scheme) if SCHEMES.contains(&scheme) => {}
    Some(scheme) => {
      return Err(invalid_url(
        url,
        &format!("unknown scheme '{scheme}' (use redis://, rediss://, unix:// or redis+unix://)"),
      ))
    }
    None => {
      return Err(invalid_url(
        url,
        "expected a URL such as redis://127.0.0.1:6379",
      ))
    }
  }
  let (address, query) = match url.split_once('?') {
    Some((address, query)) => (address, Some(query)),
    None => (url, None),
  };
  let info = address
    .into_connection_info()
    .map_err(|e| invalid_url(url, e.detail().unwrap_or(&e.to_string())))?;
  match query {
    Some(query) => apply_query(url, info, query),
    None => Ok(info),
  }
}

/// URL parameters: `db` (the database, as Unix socket URLs write it) is the only one. Anything
/// else is refused rather than ignored.
fn apply_query(
  url: &str,
  info: redis::ConnectionInfo,
  query: &str,
) -> Result<redis::ConnectionInfo> {
  let mut db = None;
  for pair in query.split('&').filter(|pair| !pair.is_empty()) {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    if name != "db" {
      return Err(invalid_url(
        url,
        &format!("unknown URL parameter '{name}' (the only one is db)"),
      ));
    }
    let number = value
      .parse::<i64>()
      .ok()
      .filter(|number| *number >= 0)
      .ok_or_else(|| invalid_url(url, &format!("db must be a database number, got '{value}'")))?;
    db = Some(number);
  }
  let Some(db) = db else {
    return Ok(info);
  };
  let from_path = info.redis_settings().db();
  if from_path != 0 && from_path != db {
    return Err(invalid_url(
      url,
      &format!("it names database {from_path} and ?db={db}; name one"),
    ));
  }
  let settings = info.redis_settings().clone().set_db(db);
  Ok(info.set_redis_settings(settings))
}

pub(super) fn invalid_url(url: &str, why: &str) -> Error {
  Error::new(
    ErrorKind::InvalidUrl,
    format!("invalid Redis URL '{}': {why}", redact_url(url)),
  )
}

pub(super) fn label_of(addr: &ConnectionAddr) -> String {
  match addr {
    ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
    ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
    ConnectionAddr::Unix(path) => format!("unix://{}", path.display()),
    _ => "redis host".to_owned(),
  }
}

/// Replaces the password of a URL's userinfo with `***`, so that a URL can be shown.
fn redact_url(url: &str) -> String {
  let Some((scheme, rest)) = url.split_once("://") else {
    return url.to_owned();
  };
  let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
  let (authority, path) = rest.split_at(authority_end);
  match authority.rsplit_once('@') {
    Some((userinfo, host)) => {
      let user = userinfo.split_once(':').map_or("", |(user, _)| user);
      let hidden = if userinfo.contains(':') {
        format!("{user}:***")
      } else {
        "***".to_owned()
      };
      format!("{scheme}://{hidden}@{host}{path}")
    }
    None => url.to_owned(),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn redaction_hides_passwords_only() {
    assert_eq!(
      redact_url("redis://127.0.0.1:6379/2"),
      "redis://127.0.0.1:6379/2"
    );
    assert_eq!(
      redact_url("redis://:s3cret@host:1/0"),
      "redis://:***@host:1/0"
    );
    assert_eq!(
      redact_url("rediss://app:p@ss@host:1"),
      "rediss://app:***@host:1"
    );
    assert_eq!(redact_url("redis://token@host"), "redis://***@host");
    assert_eq!(redact_url("not a url"), "not a url");
  }

  #[test]
  fn urls_are_checked_before_use() {
    for (url, expected) in [
      ("http://127.0.0.1:6379", "unknown scheme 'http'"),
      ("127.0.0.1:6379", "expected a URL"),
      (
        "redis://:hunter2@[::1",
        "invalid Redis URL 'redis://:***@[::1'",
      ),
    ] {
      let err = parse_url(url).unwrap_err();
      assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{url}");
      assert!(err.message().contains(expected), "{url}: {err}");
      assert!(!err.message().contains("hunter2"), "{err}");
    }
    assert!(parse_url("redis://127.0.0.1:6379/3").is_ok());
    assert!(parse_url("redis+unix:///tmp/redis.sock").is_ok());
    assert!(parse_url("unix:///tmp/redis.sock").is_ok());
    assert!(parse_url("rediss://127.0.0.1:6380").is_ok());
  }
}

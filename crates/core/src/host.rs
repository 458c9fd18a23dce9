//! One Redis host: its multiplexed connection, its timeouts, and the mapping of redis-rs
//! failures to relock's error kinds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
  Client, ConnectionAddr, ErrorKind as RedisKind, FromRedisValue, IntoConnectionInfo,
  ProtocolVersion, RedisError, Script, ServerErrorKind, ToRedisArgs,
};

use crate::error::{Error, ErrorKind, Result};
use crate::options::{ClientOptions, LogCallback, LogLevel};

const SCHEMES: [&str; 4] = ["redis", "rediss", "unix", "redis+unix"];

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

struct ClusterSource {
  cluster: ClusterClient,
  seed: Client,
  connecting: tokio::sync::Mutex<()>,
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
  /// Parses `url` and prepares a lazy connection: nothing is sent until the first command, so
  /// a host that is down when the client starts costs nothing until it is used.
  ///
  /// Must run inside a tokio runtime (the connection manager spawns its watcher task).
  pub fn connect_lazily(url: &str, options: &ClientOptions) -> Result<Host> {
    let info = parse_url(url)?;
    let label = label_of(info.addr());
    let settings = connection_settings(info.redis_settings().clone(), options);
    let info = info
      .set_redis_settings(settings)
      .set_tcp_settings(tcp_settings());
    let client = open_client(info, options, &label)?;
    let manager_config = manager_config(options);
    let connection =
      ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
        .map_err(|e| invalid_url(url, &e.to_string()))?;
    Ok(Host::new(
      label,
      Some(Link {
        client,
        connection: Connection::Single(connection),
      }),
      Source::Direct,
      manager_config,
      options,
    ))
  }

  /// A master found through the Sentinels at `sentinel_urls` under `name`, and found again
  /// when it stops answering as a master (after a failover).
  pub fn through_sentinels(
    sentinel_urls: &[String],
    name: &str,
    options: &ClientOptions,
  ) -> Result<Host> {
    if options.tls.is_some() {
      return Err(Error::new(
        ErrorKind::Unsupported,
        "tls options are not supported together with sentinel yet",
      ));
    }
    let infos = sentinel_urls
      .iter()
      .map(|url| parse_url(url).map(|info| info.set_tcp_settings(tcp_settings())))
      .collect::<Result<Vec<_>>>()?;
    let settings = connection_settings(redis::RedisConnectionInfo::default(), options);
    let node = SentinelNodeConnectionInfo::default()
      .set_redis_connection_info(settings)
      .set_tcp_settings(tcp_settings());
    let sentinels = SentinelClient::build(infos, name, Some(node), SentinelServerType::Master)
      .map_err(|e| Error::invalid_argument(format!("the sentinel settings are unusable: {e}")))?;
    let source = Source::Sentinel(Box::new(tokio::sync::Mutex::new(sentinels)));
    Ok(Host::new(
      format!("sentinel master '{name}'"),
      None,
      source,
      manager_config(options),
      options,
    ))
  }

  /// A Redis Cluster reached through `seed_urls`: every key goes to the node that serves its
  /// slot, and a lock key's side keys share that slot.
  pub fn cluster(seed_urls: &[String], options: &ClientOptions) -> Result<Host> {
    if options.tls.is_some() {
      return Err(Error::new(
        ErrorKind::Unsupported,
        "tls options are not supported together with cluster yet",
      ));
    }
    let infos = seed_urls
      .iter()
      .map(|url| parse_url(url).map(|info| info.set_tcp_settings(tcp_settings())))
      .collect::<Result<Vec<_>>>()?;
    let mut builder = ClusterClient::builder(infos.clone())
      .tcp_settings(tcp_settings())
      .connection_timeout(options.connect_timeout)
      .response_timeout(options.command_timeout)
      .use_protocol(ProtocolVersion::RESP3);
    if let Some(username) = &options.username {
      builder = builder.username(username);
    }
    if let Some(password) = &options.password {
      builder = builder.password(password.clone());
    }
    let cluster = builder
      .build()
      .map_err(|e| Error::invalid_argument(format!("the cluster settings are unusable: {e}")))?;
    let seed_info = infos[0].clone();
    let seed_settings = connection_settings(seed_info.redis_settings().clone(), options);
    let seed = Client::open(seed_info.set_redis_settings(seed_settings))
      .map_err(|e| invalid_url(&seed_urls[0], &e.to_string()))?;
    let labels: Vec<String> = infos.iter().map(|info| label_of(info.addr())).collect();
    Ok(Host::new(
      format!("cluster ({})", labels.join(", ")),
      None,
      Source::Cluster(Box::new(ClusterSource {
        cluster,
        seed,
        connecting: tokio::sync::Mutex::new(()),
      })),
      manager_config(options),
      options,
    ))
  }

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
    }
  }

  /// Notes how a call went, and logs when the host starts or stops answering. A host that
  /// answers with an error (a script error, a wrong type) still answers.
  fn observe<T>(&self, outcome: Result<T>) -> Result<T> {
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

  async fn connect_cluster(&self) -> Result<()> {
    let Source::Cluster(source) = &self.source else {
      return Ok(());
    };
    let ClusterSource {
      cluster,
      seed,
      connecting,
    } = source.as_ref();
    let _one_at_a_time = connecting.lock().await;
    if self.current().is_some() {
      return Ok(());
    }
    let connection =
      match tokio::time::timeout(self.call_timeout, cluster.get_async_connection()).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return Err(self.describe(&error)),
        Err(_) => {
          return Err(Error::new(
            ErrorKind::Timeout,
            format!(
              "{}: no node answered within {} ms",
              self.label,
              self.call_timeout.as_millis()
            ),
          ))
        }
      };
    *self.link.write().expect("link lock") = Some(Link {
      client: seed.clone(),
      connection: Connection::Cluster(connection),
    });
    Ok(())
  }

  /// Asks the Sentinels for the current master and switches to it if it changed.
  async fn find_master(&self) -> Result<()> {
    let Source::Sentinel(sentinels) = &self.source else {
      return Ok(());
    };
    let mut sentinels = sentinels.lock().await;
    let asked = tokio::time::timeout(self.call_timeout, sentinels.async_get_client()).await;
    let client = match asked {
      Ok(Ok(client)) => client,
      Ok(Err(error)) => return Err(self.describe(&error)),
      Err(_) => {
        return Err(Error::new(
          ErrorKind::Timeout,
          format!(
            "{}: no sentinel answered within {} ms",
            self.label,
            self.call_timeout.as_millis()
          ),
        ))
      }
    };
    let unchanged = self.current().is_some_and(|link| {
      link.client.get_connection_info().addr() == client.get_connection_info().addr()
    });
    if !unchanged {
      if let Some(log) = &self.log {
        let master = label_of(client.get_connection_info().addr());
        match self.current() {
          Some(old) => log(
            LogLevel::Warn,
            format!(
              "{}: failover, the master moved from {} to {master}",
              self.label,
              label_of(old.client.get_connection_info().addr())
            ),
          ),
          None => log(
            LogLevel::Debug,
            format!("{}: the master is {master}", self.label),
          ),
        }
      }
      let connection =
        ConnectionManager::new_lazy_with_config(client.clone(), self.manager_config.clone())
          .map_err(|e| self.describe(&e))?;
      *self.link.write().expect("link lock") = Some(Link {
        client,
        connection: Connection::Single(connection),
      });
    }
    Ok(())
  }

  /// After a failure that may mean the master moved, look it up again so that the next call
  /// goes to the new one.
  async fn follow_failover(&self, error: &Error) {
    let moved = matches!(error.kind(), ErrorKind::Connection | ErrorKind::Timeout)
      || ["READONLY", "MASTERDOWN", "LOADING"]
        .iter()
        .any(|code| error.message().contains(code));
    if matches!(self.source, Source::Sentinel(_)) && moved {
      let _ = self.find_master().await;
    }
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
      ErrorKind::Timeout => format!(
        "no answer within the timeout (connectTimeout {} ms, commandTimeout {} ms)",
        self.connect_timeout.as_millis(),
        self.command_timeout.as_millis()
      ),
      ErrorKind::Auth if error.kind() == RedisKind::Server(ServerErrorKind::NoPerm) => format!(
        "permission denied: the ACL user may not run what this call needs ({})",
        error.detail().unwrap_or("")
      ),
      ErrorKind::Auth => format!("authentication failed: {}", error.detail().unwrap_or("")),
      ErrorKind::Connection if error.kind() == RedisKind::Parse => {
        "the server answered, but not in the Redis protocol: not a Redis server (check the host and port)".to_owned()
      }
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

fn connection_settings(
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
fn tcp_settings() -> TcpSettings {
  TcpSettings::default().set_nodelay(true).set_keepalive(
    TcpKeepalive::new()
      .with_time(Duration::from_secs(30))
      .with_interval(Duration::from_secs(10)),
  )
}

fn manager_config(options: &ClientOptions) -> ConnectionManagerConfig {
  ConnectionManagerConfig::new()
    .set_connection_timeout(Some(options.connect_timeout))
    .set_response_timeout(Some(options.command_timeout))
    // One attempt per connect: a failed attempt fails the calls waiting on it within
    // connectTimeout, and the next call starts a fresh attempt.
    .set_number_of_retries(0)
}

fn open_client(
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

fn classify(error: &RedisError) -> ErrorKind {
  if error.is_timeout() {
    return ErrorKind::Timeout;
  }
  if matches!(error.code(), Some("WRONGPASS" | "NOAUTH"))
    || error.kind() == RedisKind::AuthenticationFailed
  {
    return ErrorKind::Auth;
  }
  match error.kind() {
    RedisKind::Io | RedisKind::Parse => ErrorKind::Connection,
    RedisKind::Server(ServerErrorKind::NoPerm) => ErrorKind::Auth,
    _ => ErrorKind::Redis,
  }
}

fn parse_url(url: &str) -> Result<redis::ConnectionInfo> {
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

fn invalid_url(url: &str, why: &str) -> Error {
  Error::new(
    ErrorKind::InvalidUrl,
    format!("invalid Redis URL '{}': {why}", redact_url(url)),
  )
}

fn label_of(addr: &ConnectionAddr) -> String {
  match addr {
    ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
    ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
    ConnectionAddr::Unix(path) => format!("unix://{}", path.display()),
    _ => "redis host".to_owned(),
  }
}

/// Replaces the password of a URL's userinfo with `***`, so that a URL can be shown.
pub fn redact_url(url: &str) -> String {
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

//! A host reached directly by its URL (TCP, TLS or a Unix socket).

use redis::aio::ConnectionManager;

use super::settings::{
  connection_settings, invalid_url, label_of, manager_config, open_client, parse_url, tcp_settings,
};
use super::{Address, Connection, Endpoint, Host, Link, Source};
use crate::error::Result;
use crate::options::ClientOptions;
use redis::ConnectionAddr;

impl Host {
  /// Parses `url` and prepares a lazy connection: nothing is sent until the first command, so
  /// a host that is down when the client starts costs nothing until it is used.
  ///
  /// Must run inside a tokio runtime (the connection manager spawns its watcher task).
  pub fn connect_lazily(url: &str, options: &ClientOptions) -> Result<Host> {
    let info = parse_url(url)?;
    let label = label_of(info.addr());
    let settings = connection_settings(info.redis_settings().clone(), options);
    let endpoint = Endpoint::of(&info, &settings);
    let info = info
      .set_redis_settings(settings)
      .set_tcp_settings(tcp_settings());
    let client = open_client(info, options, &label)?;
    let manager_config = manager_config(options);
    let connection =
      ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
        .map_err(|e| invalid_url(url, &e.to_string()))?;
    let mut host = Host::new(
      label,
      Some(Link {
        client,
        connection: Connection::Single(connection),
      }),
      Source::Direct,
      manager_config,
      options,
    );
    host.endpoint = endpoint;
    Ok(host)
  }
}

impl Endpoint {
  /// Where a plain (not TLS) connection goes, and what it says first; `None` for TLS.
  fn of(info: &redis::ConnectionInfo, settings: &redis::RedisConnectionInfo) -> Option<Endpoint> {
    let address = match info.addr() {
      ConnectionAddr::Tcp(host, port) => Address::Tcp {
        host: host.clone(),
        port: *port,
      },
      ConnectionAddr::Unix(path) => Address::Unix {
        path: path.to_string_lossy().into_owned(),
      },
      _ => return None,
    };
    Some(Endpoint {
      address,
      db: settings.db(),
      username: settings.username().map(str::to_owned),
      password: settings.password().map(str::to_owned),
    })
  }
}

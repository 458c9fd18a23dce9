//! A master found through Sentinels, and found again after a failover.

use redis::aio::ConnectionManager;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use super::settings::{connection_settings, label_of, manager_config, parse_url, tcp_settings};
use super::{Connection, Host, Link, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::options::{ClientOptions, LogLevel};

impl Host {
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

  /// Asks the Sentinels for the current master and switches to it if it changed.
  pub(super) async fn find_master(&self) -> Result<()> {
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
  pub(super) async fn follow_failover(&self, error: &Error) {
    let moved = matches!(error.kind(), ErrorKind::Connection | ErrorKind::Timeout)
      || ["READONLY", "MASTERDOWN", "LOADING"]
        .iter()
        .any(|code| error.message().contains(code));
    if matches!(self.source, Source::Sentinel(_)) && moved {
      let _ = self.find_master().await;
    }
  }
}

//! A Redis Cluster: each command goes to the node that serves its key's slot, following MOVED
//! and ASK.

use redis::cluster::ClusterClient;
use redis::{Client, ProtocolVersion};

use super::settings::{
  connection_settings, invalid_url, label_of, manager_config, parse_url, tcp_settings,
};
use super::{Connection, Host, Link, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::options::ClientOptions;

pub(super) struct ClusterSource {
  cluster: ClusterClient,
  seed: Client,
  connecting: tokio::sync::Mutex<()>,
}

impl Host {
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

  pub(super) async fn connect_cluster(&self) -> Result<()> {
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
}

//! Release notifications: waiters learn within about one round trip that a lock was released
//! (or handed to them), through Redis pub/sub, instead of polling.
//!
//! Each host gets one subscription connection, opened when the first waiter appears and shared
//! by every waiter of the process; each lock key's channel is subscribed while at least one
//! waiter of that key is waiting, and unsubscribed when the last one leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{broadcast, mpsc, OnceCell};

use super::host::Host;
use crate::error::{Error, ErrorKind, Result};
use crate::options::ClientOptions;

/// A release message: empty when the lock became free, or the new holder's token and fence when
/// a fair waiter was handed the lock.
pub type Released = Arc<str>;

/// How long a channel stays subscribed after its last waiter left, so that a key contended
/// again and again is not subscribed and unsubscribed for every wait.
const LINGER: Duration = Duration::from_millis(1000);

struct Channel {
  waiters: usize,
  sender: broadcast::Sender<Released>,
  /// Serialises SUBSCRIBE and UNSUBSCRIBE of this channel; true while subscribed on the hosts.
  wire: Arc<tokio::sync::Mutex<bool>>,
}

#[derive(Default)]
struct Channels {
  by_name: HashMap<String, Channel>,
}

pub struct Notifications {
  hosts: Vec<Arc<Host>>,
  options: ClientOptions,
  connections: Vec<OnceCell<ConnectionManager>>,
  channels: Arc<Mutex<Channels>>,
}

/// A waiter's interest in one channel; the channel is unsubscribed some time after the last
/// interest in it is dropped.
pub struct Subscription {
  channel: String,
  pub receiver: broadcast::Receiver<Released>,
  owner: Weak<Notifications>,
}

impl Notifications {
  pub fn new(hosts: Vec<Arc<Host>>, options: ClientOptions) -> Notifications {
    let connections = hosts.iter().map(|_| OnceCell::new()).collect();
    Notifications {
      hosts,
      options,
      connections,
      channels: Arc::default(),
    }
  }

  /// Starts listening on `channel` on every host and returns once the hosts confirmed, or
  /// after `bound` at the latest (the subscription goes on in the background). Hosts that cannot
  /// be reached are skipped: waiters also re-check on a timer, so a missing subscription slows
  /// a wake-up but never strands a waiter.
  pub async fn subscribe(self: &Arc<Self>, channel: &str, bound: Duration) -> Subscription {
    let (wire, receiver) = {
      let mut channels = self.channels.lock().expect("channels lock");
      let entry = channels
        .by_name
        .entry(channel.to_owned())
        .or_insert_with(|| Channel {
          waiters: 0,
          sender: broadcast::channel(64).0,
          wire: Arc::default(),
        });
      entry.waiters += 1;
      (entry.wire.clone(), entry.sender.subscribe())
    };
    let subscription = Subscription {
      channel: channel.to_owned(),
      receiver,
      owner: Arc::downgrade(self),
    };
    let notifications = self.clone();
    let name = channel.to_owned();
    let confirmed = tokio::spawn(async move {
      let mut subscribed = wire.lock().await;
      if !*subscribed {
        let name = &name;
        notifications
          .on_every_host(|mut connection| async move { connection.subscribe(name).await })
          .await;
        *subscribed = true;
      }
    });
    let _ = tokio::time::timeout(bound, confirmed).await;
    subscription
  }

  fn leave(self: Arc<Self>, channel: String) {
    let wire = {
      let mut channels = self.channels.lock().expect("channels lock");
      let Some(entry) = channels.by_name.get_mut(&channel) else {
        return;
      };
      entry.waiters -= 1;
      if entry.waiters > 0 {
        return;
      }
      entry.wire.clone()
    };
    tokio::spawn(async move {
      tokio::time::sleep(LINGER).await;
      let mut subscribed = wire.lock().await;
      if self.waiters_on(&channel) > 0 {
        return;
      }
      if *subscribed {
        self
          .on_every_host(|mut connection| {
            let channel = &channel;
            async move { connection.unsubscribe(channel).await }
          })
          .await;
        *subscribed = false;
      }
      let mut channels = self.channels.lock().expect("channels lock");
      if channels
        .by_name
        .get(&channel)
        .is_some_and(|entry| entry.waiters == 0)
      {
        channels.by_name.remove(&channel);
      }
    });
  }

  fn waiters_on(&self, channel: &str) -> usize {
    self
      .channels
      .lock()
      .expect("channels lock")
      .by_name
      .get(channel)
      .map_or(0, |entry| entry.waiters)
  }

  async fn on_every_host<F, Fut>(&self, command: F)
  where
    F: Fn(ConnectionManager) -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<()>>,
  {
    futures_util::future::join_all((0..self.hosts.len()).map(|index| {
      let command = &command;
      async move {
        if let Ok(connection) = self.connection(index).await {
          let _ = tokio::time::timeout(self.options.command_timeout, command(connection)).await;
        }
      }
    }))
    .await;
  }

  async fn connection(&self, index: usize) -> Result<ConnectionManager> {
    let host = &self.hosts[index];
    self.connections[index]
      .get_or_try_init(|| async {
        let (sender, receiver) = mpsc::unbounded_channel();
        let config = ConnectionManagerConfig::new()
          .set_connection_timeout(Some(self.options.connect_timeout))
          .set_response_timeout(Some(self.options.command_timeout))
          .set_number_of_retries(0)
          .set_push_sender(sender)
          .set_automatic_resubscription();
        let client = host.client().ok_or_else(|| {
          Error::new(
            ErrorKind::Connection,
            format!("{}: no master is known yet", host.label()),
          )
        })?;
        let connect = ConnectionManager::new_with_config(client, config);
        let connection = tokio::time::timeout(self.options.connect_timeout, connect)
          .await
          .map_err(|_| {
            host.describe(&redis::RedisError::from(std::io::Error::from(
              std::io::ErrorKind::TimedOut,
            )))
          })?
          .map_err(|e| host.describe(&e))?;
        tokio::spawn(dispatch(receiver, Arc::downgrade(&self.channels)));
        Ok(connection)
      })
      .await
      .cloned()
  }
}

impl Drop for Subscription {
  fn drop(&mut self) {
    if let Some(owner) = self.owner.upgrade() {
      owner.leave(std::mem::take(&mut self.channel));
    }
  }
}

/// Forwards each pub/sub message to the waiters of its channel, until the connection is gone.
async fn dispatch(mut pushes: mpsc::UnboundedReceiver<PushInfo>, channels: Weak<Mutex<Channels>>) {
  while let Some(push) = pushes.recv().await {
    if push.kind != PushKind::Message {
      continue;
    }
    let [Value::BulkString(channel), Value::BulkString(message)] = push.data.as_slice() else {
      continue;
    };
    let Some(channels) = channels.upgrade() else {
      return;
    };
    let channels = channels.lock().expect("channels lock");
    if let Some(entry) = std::str::from_utf8(channel)
      .ok()
      .and_then(|name| channels.by_name.get(name))
    {
      let _ = entry
        .sender
        .send(Arc::from(String::from_utf8_lossy(message).as_ref()));
    }
  }
}

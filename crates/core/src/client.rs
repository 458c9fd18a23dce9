//! The entry point: one engine over the hosts, and the primitives that share it.

use std::sync::Arc;

use crate::engine::Engine;
use crate::error::Result;
use crate::multikey::MultiLock;
use crate::mutex::Mutex;
use crate::options::ClientOptions;
use crate::rwlock::RwLock;
use crate::semaphore::Semaphore;

pub struct Client {
  engine: Arc<Engine>,
  mutex: Arc<Mutex>,
  semaphore: Arc<Semaphore>,
  rwlock: Arc<RwLock>,
  multi: Arc<MultiLock>,
}

impl Client {
  /// Prepares a client for `urls`; connects lazily, on first use. Must run inside a tokio
  /// runtime.
  pub fn new(urls: &[String], options: ClientOptions) -> Result<Client> {
    let engine = Arc::new(Engine::new(urls, options)?);
    Ok(Client {
      mutex: Arc::new(Mutex::new(engine.clone())),
      semaphore: Arc::new(Semaphore::new(engine.clone())),
      rwlock: Arc::new(RwLock::new(engine.clone())),
      multi: Arc::new(MultiLock::new(engine.clone())),
      engine,
    })
  }

  /// Hosts, connections, stats and closing, shared by every primitive.
  pub fn engine(&self) -> &Arc<Engine> {
    &self.engine
  }

  /// One holder per key.
  pub fn mutex(&self) -> &Arc<Mutex> {
    &self.mutex
  }

  /// All of several keys or none.
  pub fn multi(&self) -> &Arc<MultiLock> {
    &self.multi
  }

  /// Many readers or one writer.
  pub fn rwlock(&self) -> &Arc<RwLock> {
    &self.rwlock
  }

  /// Up to a number of permits in use at once.
  pub fn semaphore(&self) -> &Arc<Semaphore> {
    &self.semaphore
  }

  /// Ends every pending call with [`crate::ErrorKind::Closed`], refuses new ones, and releases
  /// the locks held through handles (each release bounded by the host timeouts).
  pub async fn close(&self) {
    self.engine.close().await
  }
}

//! The lock algorithms, Redis scripts and connection handling of relock. Nothing here knows
//! about Node.js (this crate does not depend on napi): the addon at the repository's root maps
//! these types to JavaScript.

pub mod client;
pub mod engine;
pub mod error;
pub mod multikey;
pub mod mutex;
pub mod options;
pub mod rwlock;
pub mod semaphore;
pub mod settings;
pub mod validate;

pub use client::Client;
pub use engine::new_token;
pub use engine::stats::{Counts, Event};
pub use engine::watchdog::{HeldLock, LostCallback, Renewal};
pub use error::{Error, ErrorKind, Result};
pub use multikey::MultiLock;
pub use mutex::acquire::AcquireOptions;
pub use mutex::inspect::{Listing, LockState, QueuedWaiter, LIST_LIMIT};
pub use mutex::{Lease, Mutex};
pub use options::{ClientOptions, LogLevel, ReplicaAck, ReplicaPolicy, RetryPolicy, TlsOptions};
pub use rwlock::{Mode, RwLock, RwState};
pub use semaphore::{PermitHolder, Semaphore, SemaphoreOptions, SemaphoreState};
pub use settings::{
  AcquireSettings, ClientSettings, ReplicaAckSettings, RetrySettings, SemaphoreSettings,
  TlsSettings,
};

//! The lock algorithms, Redis scripts and connection handling of relock. Nothing here knows
//! about Node.js (this crate does not depend on napi): the addon at the repository's root maps
//! these types to JavaScript.

pub mod acquire;
pub mod client;
pub mod error;
pub mod held;
pub mod host;
pub mod inspect;
pub mod notify;
pub mod options;
pub mod quorum;
pub mod scripts;
pub mod stats;
pub mod validate;

pub use acquire::AcquireOptions;
pub use client::{new_token, Client, Lease};
pub use error::{Error, ErrorKind, Result};
pub use held::{HeldLock, LostCallback};
pub use inspect::{Listing, LockState, QueuedWaiter, LIST_LIMIT};
pub use options::{ClientOptions, LogLevel, ReplicaAck, ReplicaPolicy, RetryPolicy, TlsOptions};
pub use stats::{Counts, Event};

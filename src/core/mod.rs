//! The lock algorithms, Redis scripts and connection handling. Nothing here knows about
//! Node.js: the N-API binding in `crate::binding` maps these types to JavaScript.

pub mod client;
pub mod error;
pub mod host;
pub mod options;
pub mod quorum;
pub mod scripts;
pub mod validate;

pub use client::{new_token, Client, Lease};
pub use error::{Error, ErrorKind, Result};
pub use options::{ClientOptions, RetryPolicy};

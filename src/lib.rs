#![deny(clippy::all)]

pub mod core;
pub mod binding;

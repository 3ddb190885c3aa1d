//! A small blocking S3 client for the agent's object-store backend
//! (issue 16): path-style requests signed with SigV4 ([`sigv4`]), over
//! ureq with rustls (no async runtime), with retries and backoff for what
//! a store may do under load ([`retry`]), and keys only from where the
//! agent runs ([`creds`]).
//!
//! The object-store backend (crate::s3store, `--dest=…/s3:NAME`) uses it.

pub(crate) mod call;
pub mod client;
pub mod creds;
pub mod error;
pub mod lease;
mod req;
pub mod retry;
pub mod sigv4;
pub mod time;
pub mod xml;

pub use client::{Client, Config, Entry, ListPage, ObjectInfo, PutOutcome};
pub use creds::Credentials;
pub use error::{S3Error, S3Result};
pub use retry::Retry;

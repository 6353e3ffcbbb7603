#![forbid(unsafe_code)]
//! A simulated Asterisk that speaks AMI byte for byte like Asterisk 22.10.1 (AMI 11.0.0) as
//! captured in fixtures/transcripts: login (plain and MD5), permissions, event classes and
//! filters, Originate on Local channels with the real event sequence, channels, queues,
//! AstDB, CLI commands, plus fault controls (drop, stall, garbage, restart) and load
//! generators (event firehose, call traffic) for testing a proxy.

mod actions;
mod astdb;
mod calls;
mod channels;
mod clock;
mod commands;
mod config;
mod dialplan;
mod error;
mod events;
mod filters;
mod firehose;
mod pbx;
mod perms;
mod queues;
mod server;
mod session;

pub use config::{load_users, parse_users, SimConfig, SimUser};
pub use error::SimError;
pub use server::{start, SimHandle};

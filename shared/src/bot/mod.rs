//! Bot defence (seed 004, flow 10): score each buyer request from what is known about it
//! ([`score`]), challenge above a threshold ([`challenge`]), block for an hour after a failed
//! challenge. What is remembered between requests (counts, blocks, passes, spent challenges) is
//! the [`watchlist`]; admins list and lift blocks through [`admin`].

pub mod admin;
pub mod challenge;
pub mod config;
pub mod defence;
pub mod http;
pub mod score;
pub mod watchlist;

//! Bot defence (seed 004, flow 10): score each buyer request from what is known about it
//! ([`score`]), challenge above a threshold, block for an hour after a failed challenge.

pub mod score;

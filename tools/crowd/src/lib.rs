//! crowd: runs a flash sale against a deployed flashsale API the way a crowd of buyers would,
//! then reads the sale's ledger back from every store and gives the invariant's verdict.
//!
//! - [`scenario`]: the sale, the crowd and its behaviours (TOML files in `scenarios/`);
//! - [`buyer`], [`crowd`]: what each buyer does, and the arrival curve; [`client`]: what its
//!   client looks like to the bot defence (a person's browser or a scripted bot);
//! - [`api`], [`tokens`], [`http`], [`target`]: how the system is reached;
//! - [`recorder`]: every call's outcome and latency, live counters;
//! - [`ledger`], [`sale_run`]: settling, the ledger and the verdict;
//! - [`summary`], [`report`], [`progress`]: what a run produced, per behaviour; the text, HTML
//!   and JSON reports; the live view.
//!
//! Two binaries use it: `demo` (the README's main job: one sale, watched live) and `chaos`
//! (one sale per fault, with the fault injected mid-sale; RELIABILITY.md).

pub mod api;
pub mod buyer;
pub mod chaos;
pub mod client;
pub mod crowd;
pub mod http;
pub mod ledger;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod sale_run;
pub mod scenario;
pub mod summary;
pub mod target;
pub mod tokens;

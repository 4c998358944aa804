//! The Lua scripts, compiled into the binary. Each script is `common.lua` followed by its own
//! body, so shared helpers exist once. `redis::Script` sends EVALSHA and falls back to
//! SCRIPT LOAD + EVALSHA on NOSCRIPT (a restarted or failed-over node has no scripts).

use std::sync::LazyLock;

use redis::Script;

macro_rules! stock_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../scripts/common.lua"),
                "\n",
                include_str!(concat!("../scripts/", $file))
            ))
        })
    };
}

pub static RESERVE: LazyLock<Script> = stock_script!("reserve.lua");
pub static TAKE: LazyLock<Script> = stock_script!("take.lua");
pub static CLAIM: LazyLock<Script> = stock_script!("claim.lua");
pub static CONFIRM: LazyLock<Script> = stock_script!("confirm.lua");
pub static UNCLAIM: LazyLock<Script> = stock_script!("unclaim.lua");
pub static RELEASE: LazyLock<Script> = stock_script!("release.lua");
pub static COMMIT: LazyLock<Script> = stock_script!("commit.lua");
pub static SETUP: LazyLock<Script> = stock_script!("setup.lua");
pub static TOP_UP: LazyLock<Script> = stock_script!("top_up.lua");
pub static CONFIGURE: LazyLock<Script> = stock_script!("configure.lua");
pub static RESTORE_HOLD: LazyLock<Script> = stock_script!("restore_hold.lua");
pub static RESTORE_CLAIMS: LazyLock<Script> = stock_script!("restore_claims.lua");
pub static PAUSE: LazyLock<Script> = stock_script!("pause.lua");
pub static REBUILD_SHARD: LazyLock<Script> = stock_script!("rebuild_shard.lua");
pub static RESUME: LazyLock<Script> = stock_script!("resume.lua");
pub static UNLOCK: LazyLock<Script> = stock_script!("unlock.lua");
pub static ROLLBACK: LazyLock<Script> = stock_script!("rollback.lua");

/// The scripts of the request paths, loaded at start-up (cold start does it once).
pub fn all() -> [&'static Script; 11] {
    [
        &RESERVE,
        &CLAIM,
        &TAKE,
        &CONFIRM,
        &UNCLAIM,
        &RELEASE,
        &COMMIT,
        &SETUP,
        &TOP_UP,
        &ROLLBACK,
        &RESTORE_HOLD,
    ]
}

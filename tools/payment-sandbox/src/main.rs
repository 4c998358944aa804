//! `payment-sandbox`: the local Stripe stand-in as a process, for the local stack and e2e
//! runs. Runs until SIGTERM or SIGINT. Logs one line per API call and per webhook delivery
//! attempt (set `RUST_LOG` to change the level); the API key and webhook secret are never
//! logged.

use std::net::SocketAddr;
use std::process::ExitCode;

use payment_sandbox::{Sandbox, SandboxConfig};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: payment-sandbox [options]     (each option falls back to its environment variable)
  --listen ADDR                 SANDBOX_LISTEN                 loopback only (default 127.0.0.1:12111)
  --secret-key KEY              SANDBOX_SECRET_KEY             API key (default sk_test_sandbox)
  --webhook-url URL             SANDBOX_WEBHOOK_URL            http:// URL events are POSTed to (default none)
  --webhook-secret SECRET       SANDBOX_WEBHOOK_SECRET         signing secret (default whsec_sandbox)
  --latency-ms MIN-MAX          SANDBOX_LATENCY_MS             per-call latency (default 500-2000)
  --slow-ms MS                  SANDBOX_SLOW_MS                pm_card_sandbox_slow settles after (default 5000)
  --max-delivery-attempts N     SANDBOX_MAX_DELIVERY_ATTEMPTS  webhook attempts per event (default 8)
  --retry-base-ms MS            SANDBOX_RETRY_BASE_MS          first retry delay, doubled each time (default 500)
  -h, --help";

#[derive(Debug)]
enum Command {
    Run(SandboxConfig),
    Help,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = match parse(std::env::args().skip(1), &|name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("payment-sandbox: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Debug of the config masks both secrets.
    tracing::info!(?config, "starting payment sandbox");
    let sandbox = match Sandbox::start(config).await {
        Ok(sandbox) => sandbox,
        Err(error) => {
            tracing::error!(%error, "cannot start the payment sandbox");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(base_url = %sandbox.base_url(), "payment sandbox ready");
    if let Err(error) = wait_for_shutdown().await {
        tracing::error!(%error, "cannot listen for signals");
        return ExitCode::FAILURE;
    }
    drop(sandbox);
    tracing::info!("payment sandbox stopped");
    ExitCode::SUCCESS
}

async fn wait_for_shutdown() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => Ok(()),
        result = tokio::signal::ctrl_c() => result,
    }
}

/// Environment first, then flags (`--flag value` or `--flag=value`) override it.
fn parse(
    args: impl IntoIterator<Item = String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut config = SandboxConfig::default();
    let set = |config: &mut SandboxConfig, flag: &str, value: String| -> Result<(), String> {
        match flag {
            "--listen" => config.listen = listen(&value)?,
            "--secret-key" => config.secret_key = non_empty(flag, value)?,
            "--webhook-url" => config.webhook_url = Some(value).filter(|v| !v.is_empty()),
            "--webhook-secret" => config.webhook_secret = non_empty(flag, value)?,
            "--latency-ms" => config.latency_ms = latency(&value)?,
            "--slow-ms" => config.slow_ms = number(flag, &value)?,
            "--max-delivery-attempts" => {
                config.max_delivery_attempts = u32::try_from(number(flag, &value)?)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| format!("{flag}: expected an integer >= 1"))?
            }
            "--retry-base-ms" => config.retry_base_ms = number(flag, &value)?,
            _ => return Err(format!("unknown option: {flag}")),
        }
        Ok(())
    };
    for (flag, var) in [
        ("--listen", "SANDBOX_LISTEN"),
        ("--secret-key", "SANDBOX_SECRET_KEY"),
        ("--webhook-url", "SANDBOX_WEBHOOK_URL"),
        ("--webhook-secret", "SANDBOX_WEBHOOK_SECRET"),
        ("--latency-ms", "SANDBOX_LATENCY_MS"),
        ("--slow-ms", "SANDBOX_SLOW_MS"),
        ("--max-delivery-attempts", "SANDBOX_MAX_DELIVERY_ATTEMPTS"),
        ("--retry-base-ms", "SANDBOX_RETRY_BASE_MS"),
    ] {
        if let Some(value) = env(var) {
            set(&mut config, flag, value).map_err(|e| format!("{var}: {e}"))?;
        }
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), value.to_owned()),
            _ => {
                let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
                (arg, value)
            }
        };
        set(&mut config, &flag, value)?;
    }
    Ok(Command::Run(config))
}

fn listen(value: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = value
        .parse()
        .map_err(|_| format!("--listen: expected IP:PORT, got {value:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--listen: the sandbox listens on loopback only (127.0.0.1), not {}",
            addr.ip()
        ));
    }
    Ok(addr)
}

fn latency(value: &str) -> Result<(u64, u64), String> {
    let (min, max) = value.split_once('-').unwrap_or((value, value));
    let min = number("--latency-ms", min)?;
    let max = number("--latency-ms", max)?;
    if min > max {
        return Err(format!("--latency-ms: min {min} exceeds max {max}"));
    }
    Ok((min, max))
}

fn number(flag: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{flag}: expected a non-negative integer, got {value:?}"))
}

fn non_empty(flag: &str, value: String) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!("{flag}: must not be empty"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<SandboxConfig, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match parse(args.iter().map(|s| s.to_string()), &lookup)? {
            Command::Run(config) => Ok(config),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_env_and_flags() {
        let config = run(&[], &[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:12111");
        assert_eq!(config.latency_ms, (500, 2000));

        let config = run(
            &[
                "--latency-ms",
                "0-5",
                "--slow-ms=100",
                "--listen",
                "127.0.0.1:0",
            ],
            &[
                ("SANDBOX_SECRET_KEY", "sk_test_env"),
                ("SANDBOX_LISTEN", "127.0.0.1:9999"),
                ("SANDBOX_WEBHOOK_URL", "http://127.0.0.1:8080/hook"),
            ],
        )
        .unwrap();
        assert_eq!(config.latency_ms, (0, 5));
        assert_eq!(config.slow_ms, 100);
        assert_eq!(config.secret_key, "sk_test_env");
        assert_eq!(
            config.listen.to_string(),
            "127.0.0.1:0",
            "flags override env"
        );
        assert_eq!(
            config.webhook_url.as_deref(),
            Some("http://127.0.0.1:8080/hook")
        );
    }

    #[test]
    fn refuses_bad_input() {
        assert!(run(&["--listen", "0.0.0.0:12111"], &[]).is_err());
        assert!(run(&[], &[("SANDBOX_LISTEN", "10.0.0.1:1")]).is_err());
        assert!(run(&["--latency-ms", "5-1"], &[]).is_err());
        assert!(run(&["--max-delivery-attempts", "0"], &[]).is_err());
        assert!(run(&["--slow-ms"], &[]).is_err());
        assert!(run(&["--bogus", "1"], &[]).is_err());
        assert_eq!(run(&["--help"], &[]).unwrap_err(), "help");
    }

    #[test]
    fn debug_masks_secrets() {
        let config = run(
            &[
                "--secret-key",
                "sk_test_hidden",
                "--webhook-secret",
                "whsec_hidden",
            ],
            &[],
        )
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hidden"), "{printed}");
    }
}

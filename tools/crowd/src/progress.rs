//! The live view of a running crowd: a bar of buyers done, and a status line with requests
//! (and per second), reserved, paid, confirmed, failed, expired, stock left and refusals by
//! reason. With `quiet` (CI, logs) the same line is printed every 5 s instead.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::recorder::Recorder;
use crate::sale_run::StockPoint;

pub struct Live {
    task: tokio::task::JoinHandle<()>,
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
}

impl Live {
    /// `buyers`: how many the crowd has (the bar's length); `stock`: the sale's units.
    pub fn start(
        recorder: Arc<Recorder>,
        buyers: u64,
        stock: u64,
        stock_points: Option<Arc<Mutex<Vec<StockPoint>>>>,
        quiet: bool,
    ) -> Self {
        let line = move |rec: &Recorder, last: &mut (u64, f64)| -> String {
            let c = &rec.counters;
            let requests = c.requests.load(Ordering::Relaxed);
            let now = rec.elapsed().as_secs_f64();
            let rate = if now > last.1 {
                (requests - last.0) as f64 / (now - last.1)
            } else {
                0.0
            };
            *last = (requests, now);
            let left = stock_points
                .as_ref()
                .and_then(|p| p.lock().ok().and_then(|p| p.last().cloned()))
                .map_or_else(|| "?".to_string(), |p| p.available.to_string());
            let refused: Vec<String> = rec
                .refusals()
                .into_iter()
                .map(|(why, n)| format!("{why} {n}"))
                .collect();
            format!(
                "requests {requests} ({rate:.1}/s) | reserved {} | paid {} | confirmed {} | failed {} | expired {} | stock left {left}/{stock} | refused: {}",
                c.reserved.load(Ordering::Relaxed),
                c.payments_accepted.load(Ordering::Relaxed),
                c.confirmed.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
                c.expired.load(Ordering::Relaxed),
                if refused.is_empty() { "none".into() } else { refused.join(", ") },
            )
        };
        if quiet {
            let task = tokio::spawn(async move {
                let mut last = (0, 0.0);
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    println!(
                        "[{:>5.1} s] {}",
                        recorder.elapsed().as_secs_f64(),
                        line(&recorder, &mut last)
                    );
                }
            });
            return Self { task, bars: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let done = multi.add(ProgressBar::new(buyers));
        done.set_style(
            ProgressStyle::with_template("{elapsed_precise} buyers done [{bar:40}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let (done2, status2) = (done.clone(), status.clone());
        let task = tokio::spawn(async move {
            let mut last = (0, 0.0);
            loop {
                status2.set_message(line(&recorder, &mut last));
                done2.set_position(recorder.counters.buyers_done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self {
            task,
            bars: Some((multi, done, status)),
        }
    }

    /// Stops the display, leaving its last state on screen, and prints `message`.
    pub fn finish(self, message: &str) {
        self.task.abort();
        if let Some((_multi, done, status)) = self.bars {
            done.finish();
            status.finish();
        }
        println!("{message}");
    }
}

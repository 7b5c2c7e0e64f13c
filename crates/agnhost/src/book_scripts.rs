//! `ssd-monitor` and `batch-job` (ferry extensions): the busybox shell scripts of the book "Kubernetes in Action"
//! (`luksa/ssd-monitor`: `while true; do echo "SSD OK"; sleep 5; done`; `luksa/batch-job`: `echo "$(date) Batch job
//! starting"; sleep 120; echo "$(date) Finished succesfully"`, the typo included).
//!
//! `batch-job` sleeps `BATCH_JOB_SECONDS` seconds when that environment variable is set to a whole number (ferry's
//! knob for tests; the image always sleeps 120 s).

use std::io::Write;
use std::time::Duration;

use jiff::Timestamp;

/// How often `ssd-monitor` reports.
pub const SSD_MONITOR_INTERVAL: Duration = Duration::from_secs(5);
/// How long `batch-job` works without `BATCH_JOB_SECONDS`.
pub const BATCH_JOB_DEFAULT: Duration = Duration::from_secs(120);
/// The environment variable that overrides `batch-job`'s sleep, in whole seconds.
pub const BATCH_JOB_SECONDS_ENV: &str = "BATCH_JOB_SECONDS";

/// busybox `date`'s default format (the container's zone is UTC): `Thu Jan  1 00:00:00 UTC 1970`.
pub fn busybox_date(at: Timestamp) -> String {
    at.strftime("%a %b %e %H:%M:%S UTC %Y").to_string()
}

/// `batch-job`'s sleep: `BATCH_JOB_SECONDS` when it is a whole number of seconds, else 120 s.
pub fn batch_job_duration(env_value: Option<&str>) -> Duration {
    env_value.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs).unwrap_or(BATCH_JOB_DEFAULT)
}

/// Prints `SSD OK` every `interval`, `rounds` times (forever with `None`). Returns when writing fails.
pub async fn ssd_monitor(out: &mut impl Write, interval: Duration, rounds: Option<u64>) -> i32 {
    let mut done = 0u64;
    loop {
        if writeln!(out, "SSD OK").and_then(|_| out.flush()).is_err() {
            return 1;
        }
        done += 1;
        if rounds.is_some_and(|r| done >= r) {
            return 0;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Prints the start line, works for `duration`, prints the end line; exit code 0.
pub async fn batch_job(out: &mut impl Write, duration: Duration) -> i32 {
    let _ = writeln!(out, "{} Batch job starting", busybox_date(Timestamp::now())).and_then(|_| out.flush());
    tokio::time::sleep(duration).await;
    let _ = writeln!(out, "{} Finished succesfully", busybox_date(Timestamp::now())).and_then(|_| out.flush());
    0
}

pub(crate) async fn ssd_monitor_main() -> i32 {
    ssd_monitor(&mut std::io::stdout(), SSD_MONITOR_INTERVAL, None).await
}

pub(crate) async fn batch_job_main() -> i32 {
    let duration = batch_job_duration(std::env::var(BATCH_JOB_SECONDS_ENV).ok().as_deref());
    batch_job(&mut std::io::stdout(), duration).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_formatted_as_busybox_prints_it() {
        let at: Timestamp = "2024-03-05T07:08:09Z".parse().unwrap();
        assert_eq!(busybox_date(at), "Tue Mar  5 07:08:09 UTC 2024");
        let at: Timestamp = "2024-12-25T23:00:00Z".parse().unwrap();
        assert_eq!(busybox_date(at), "Wed Dec 25 23:00:00 UTC 2024");
    }

    #[test]
    fn batch_job_seconds_override() {
        assert_eq!(batch_job_duration(None), Duration::from_secs(120));
        assert_eq!(batch_job_duration(Some("3")), Duration::from_secs(3));
        assert_eq!(batch_job_duration(Some("0")), Duration::ZERO);
        assert_eq!(batch_job_duration(Some("soon")), Duration::from_secs(120));
        assert_eq!(batch_job_duration(Some("-1")), Duration::from_secs(120));
    }
}

//! What the load benches report for one run: requests/s and the p50/p99 latency.
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Summary {
    /// From every request's latency and the run's wall time (`latencies` must not be empty).
    pub fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        let pick =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        Self {
            rps: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: pick(0.50),
            p99: pick(0.99),
        }
    }
}

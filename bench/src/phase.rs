//! One measured phase: calls completed and failed, and their latencies; and
//! the closed loop that drives one.

use std::time::{Duration, Instant};

use tonic::transport::Channel;

pub(crate) struct Phase {
    pub completed: usize,
    pub errors: usize,
    pub elapsed: Duration,
    latencies_us: Vec<u32>,
}

/// What one client did in a phase: (completed, errors, latencies in µs).
pub(crate) type ClientTally = (usize, usize, Vec<u32>);

impl Phase {
    pub(crate) fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * percentile).round() as usize;
        f64::from(self.latencies_us[index]) / 1000.0
    }

    pub(crate) fn describe(&self, name: &str) -> String {
        format!(
            "{name:<18} {:>8} in {:>5.1} s = {:>7.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}",
            self.completed,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.errors
        )
    }
}

pub(crate) fn merge(results: Vec<ClientTally>, elapsed: Duration) -> Phase {
    let mut phase = Phase {
        completed: 0,
        errors: 0,
        elapsed,
        latencies_us: Vec::new(),
    };
    for (completed, errors, latencies) in results {
        phase.completed += completed;
        phase.errors += errors;
        phase.latencies_us.extend(latencies);
    }
    phase.latencies_us.sort_unstable();
    phase
}

/// Phases run in slices, as one phase.
pub(crate) fn combine(slices: Vec<Phase>) -> Phase {
    let elapsed = slices.iter().map(|phase| phase.elapsed).sum();
    merge(
        slices
            .into_iter()
            .map(|phase| (phase.completed, phase.errors, phase.latencies_us))
            .collect(),
        elapsed,
    )
}

/// Runs `call` from `clients` concurrent clients over `channels` for
/// `duration`; `call(channel, client, iteration)` says whether it succeeded.
pub(crate) async fn drive<F, Fut>(
    clients: usize,
    duration: Duration,
    channels: &[Channel],
    call: F,
) -> Phase
where
    F: Fn(Channel, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let channel = channels[client % channels.len()].clone();
        let call = call.clone();
        tasks.spawn(async move {
            let (mut completed, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
            let mut iteration = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                if call(channel.clone(), client, iteration).await {
                    completed += 1;
                    latencies.push(sent.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                }
                iteration += 1;
            }
            (completed, errors, latencies)
        });
    }
    merge(tasks.join_all().await, started.elapsed())
}

/// The median of some rates (the mean of the middle two of an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

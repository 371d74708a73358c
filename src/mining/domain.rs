//! Mining domain types. Physical measurements are `f64` (they are not money);
//! earnings are exact micro-USD.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::FieldViolation;
use crate::fixed;
use crate::money::{AZR_SCALE, MAX_AMOUNT_MICROS};

/// Most samples one RecordStatistics stream may carry.
pub const MAX_SAMPLES_PER_STREAM: usize = 100_000;
/// How far in the future a sample's time may be (clock skew of a rig).
pub const ALLOWED_CLOCK_SKEW_SECONDS: i64 = 60;
/// The physical range a rig's temperature can be in, °C.
pub const TEMPERATURE_RANGE: (f64, f64) = (-50.0, 150.0);
/// The largest hashrate, power or difficulty a sample may report. Far above
/// anything physical (all of Bitcoin is ~10^15 MH/s), and low enough that
/// sums and averages over any number of samples stay finite: PostgreSQL's
/// `AVG` over values near `f64::MAX` fails with "value out of range:
/// overflow" where SQLite returns infinity.
pub const MAX_MEASUREMENT: f64 = 1e18;

wire_enum!(SessionStatus as crate::proto::mining::SessionStatus, "session status" {
    Active => "active",
    Ended => "ended",
});

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    pub miner: Option<Uuid>,
    pub wallet: Uuid,
    pub algorithm: String,
    pub pool_name: String,
    pub pool_url: String,
    pub worker_name: String,
}

pub fn parse_algorithm(field: &str, text: &str) -> Result<String, FieldViolation> {
    let valid = (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(FieldViolation::new(
            field,
            "must be 1 to 32 characters of a-z, 0-9, '-' and '_'",
        ))
    }
}

pub fn parse_text(
    field: &str,
    text: &str,
    required: bool,
    max: usize,
) -> Result<String, FieldViolation> {
    if required && text.trim().is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max} characters without control characters"),
        ));
    }
    Ok(text.to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub hashrate_mhs: f64,
    pub power_watts: f64,
    pub temperature_celsius: f64,
    pub shares_accepted: i64,
    pub shares_rejected: i64,
    pub difficulty: f64,
    pub network_hashrate_mhs: f64,
    pub earnings_micros: i64,
    /// The rig's own number for the sample, if it numbers them.
    pub rig_sequence: Option<i64>,
}

pub struct RawSample<'a> {
    pub at: Option<DateTime<Utc>>,
    pub hashrate_mhs: f64,
    pub power_watts: f64,
    pub temperature_celsius: f64,
    pub shares_accepted: i64,
    pub shares_rejected: i64,
    pub difficulty: f64,
    pub network_hashrate_mhs: f64,
    pub earnings_usd: &'a str,
    /// 0 when the rig does not number its samples.
    pub rig_sequence: i64,
}

impl Sample {
    /// Checks one sample; `prefix` names it (`samples[17]`).
    pub fn parse(prefix: &str, raw: RawSample<'_>) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut non_negative = |name: &str, value: f64| {
            if !(0.0..=MAX_MEASUREMENT).contains(&value) {
                violations.push(FieldViolation::new(
                    format!("{prefix}.{name}"),
                    format!("must be a number from 0 to {MAX_MEASUREMENT:e}"),
                ));
            }
        };
        non_negative("hashrate_mhs", raw.hashrate_mhs);
        non_negative("power_watts", raw.power_watts);
        non_negative("difficulty", raw.difficulty);
        non_negative("network_hashrate_mhs", raw.network_hashrate_mhs);
        let (low, high) = TEMPERATURE_RANGE;
        if !(low..=high).contains(&raw.temperature_celsius) {
            violations.push(FieldViolation::new(
                format!("{prefix}.temperature_celsius"),
                format!("must be between {low} and {high} °C"),
            ));
        }
        for (name, value) in [
            ("shares_accepted", raw.shares_accepted),
            ("shares_rejected", raw.shares_rejected),
            ("rig_sequence", raw.rig_sequence),
        ] {
            if value < 0 {
                violations.push(FieldViolation::new(
                    format!("{prefix}.{name}"),
                    "must not be negative",
                ));
            }
        }
        if raw.at.is_none() {
            violations.push(FieldViolation::new(
                format!("{prefix}.sample_time"),
                "is required",
            ));
        }
        let earnings = if raw.earnings_usd.is_empty() {
            Ok(0)
        } else {
            fixed::parse_units(
                &format!("{prefix}.earnings_usd"),
                raw.earnings_usd,
                AZR_SCALE,
                MAX_AMOUNT_MICROS,
            )
        };
        let earnings = earnings
            .map_err(|violation| violations.push(violation))
            .ok();
        match (violations.is_empty(), raw.at, earnings) {
            (true, Some(at), Some(earnings_micros)) => Ok(Self {
                at,
                hashrate_mhs: raw.hashrate_mhs,
                power_watts: raw.power_watts,
                temperature_celsius: raw.temperature_celsius,
                shares_accepted: raw.shares_accepted,
                shares_rejected: raw.shares_rejected,
                difficulty: raw.difficulty,
                network_hashrate_mhs: raw.network_hashrate_mhs,
                earnings_micros,
                rig_sequence: (raw.rig_sequence > 0).then_some(raw.rig_sequence),
            }),
            _ => Err(violations),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Session {
    pub id: Uuid,
    pub miner: Uuid,
    pub wallet: Uuid,
    pub algorithm: String,
    pub pool_name: String,
    pub pool_url: String,
    pub worker_name: String,
    pub status: SessionStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub last_sample_at: Option<DateTime<Utc>>,
    pub sample_count: i64,
    pub hashrate_sum: f64,
    pub power_sum: f64,
    pub shares_accepted: i64,
    pub shares_rejected: i64,
    pub earnings_micros: i64,
    pub mint_transaction: Option<Uuid>,
    /// The highest rig sequence number stored (see [`Session::new_samples`]).
    pub last_rig_sequence: Option<i64>,
}

impl Session {
    /// The samples of a stream this session does not hold yet. A rig that
    /// numbers its samples (all of a stream's, increasing) may resend any:
    /// those numbered at or below the highest stored are dropped, so a
    /// retried stream never counts twice. Unnumbered samples are all new.
    pub fn new_samples(&self, samples: Vec<Sample>) -> Result<Vec<Sample>, FieldViolation> {
        let numbered = samples.iter().filter(|s| s.rig_sequence.is_some()).count();
        if numbered == 0 {
            return Ok(samples);
        }
        if numbered != samples.len() {
            let index = samples
                .iter()
                .position(|sample| sample.rig_sequence.is_none())
                .unwrap_or_default();
            return Err(FieldViolation::new(
                format!("samples[{index}].rig_sequence"),
                "is required when other samples of the stream are numbered",
            ));
        }
        let mut previous = 0;
        for (index, sample) in samples.iter().enumerate() {
            let number = sample.rig_sequence.unwrap_or_default();
            if number <= previous {
                return Err(FieldViolation::new(
                    format!("samples[{index}].rig_sequence"),
                    "must increase within a stream",
                ));
            }
            previous = number;
        }
        let stored = self.last_rig_sequence.unwrap_or(0);
        Ok(samples
            .into_iter()
            .filter(|sample| sample.rig_sequence.unwrap_or_default() > stored)
            .collect())
    }

    pub fn average_hashrate(&self) -> f64 {
        if self.sample_count == 0 {
            0.0
        } else {
            self.hashrate_sum / self.sample_count as f64
        }
    }

    pub fn average_power(&self) -> f64 {
        if self.sample_count == 0 {
            0.0
        } else {
            self.power_sum / self.sample_count as f64
        }
    }

    /// Mean power times the session's duration (to its end, or while active
    /// to its last sample), in kWh.
    pub fn energy_kwh(&self) -> f64 {
        let until = self
            .ended_at
            .or(self.last_sample_at)
            .unwrap_or(self.started_at);
        let hours = (until - self.started_at).num_milliseconds().max(0) as f64 / 3_600_000.0;
        self.average_power() * hours / 1000.0
    }

    /// Adds a stream's samples to the running totals, or names the first
    /// sample that would take a total out of range: counts must fit an i64,
    /// and the session's earnings must fit one mint (at most
    /// [`MAX_AMOUNT_MICROS`]) so that the session can always be ended.
    pub fn absorb(&mut self, samples: &[Sample]) -> Result<(), FieldViolation> {
        let mut totals = self.clone();
        for (index, sample) in samples.iter().enumerate() {
            let overflow = |field: &str| {
                FieldViolation::new(
                    format!("samples[{index}].{field}"),
                    "takes the session's total out of range",
                )
            };
            totals.sample_count = totals
                .sample_count
                .checked_add(1)
                .ok_or_else(|| overflow("sample_time"))?;
            totals.shares_accepted = totals
                .shares_accepted
                .checked_add(sample.shares_accepted)
                .ok_or_else(|| overflow("shares_accepted"))?;
            totals.shares_rejected = totals
                .shares_rejected
                .checked_add(sample.shares_rejected)
                .ok_or_else(|| overflow("shares_rejected"))?;
            totals.earnings_micros = totals
                .earnings_micros
                .checked_add(sample.earnings_micros)
                .filter(|total| *total <= MAX_AMOUNT_MICROS)
                .ok_or_else(|| {
                    FieldViolation::new(
                        format!("samples[{index}].earnings_usd"),
                        "takes the session's earnings above the largest single mint (1000000000)",
                    )
                })?;
            if sample.rig_sequence.is_some() {
                totals.last_rig_sequence = sample.rig_sequence;
            }
            totals.hashrate_sum += sample.hashrate_mhs;
            totals.power_sum += sample.power_watts;
            totals.last_sample_at = Some(
                totals
                    .last_sample_at
                    .map_or(sample.at, |last| last.max(sample.at)),
            );
        }
        *self = totals;
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub miner: Option<Uuid>,
    pub status: Option<SessionStatus>,
    pub algorithm: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl SessionFilter {
    pub fn fingerprint(&self) -> String {
        format!("mining_sessions|{self:?}")
    }
}

/// The samples of one RecordStatistics stream, all valid, for one session.
#[derive(Clone, Debug, PartialEq)]
pub struct Statistics {
    pub session: Uuid,
    pub samples: Vec<Sample>,
}

/// What a GetMiningPerformance call aggregates: samples in `[start, end)`,
/// of one miner or of all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerformanceWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub miner: Option<Uuid>,
}

/// Seconds in a rollup bucket.
const SECONDS_PER_HOUR: i64 = 3600;

/// The rollup bucket a time falls in: whole hours since 1970-01-01T00:00Z.
pub fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(SECONDS_PER_HOUR)
}

/// The start of a rollup bucket.
pub fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour.saturating_mul(SECONDS_PER_HOUR), 0).unwrap_or_default()
}

/// The first bucket that starts at or after `at`.
fn first_hour_from(at: DateTime<Utc>) -> i64 {
    let hour = hour_of(at);
    if hour_start(hour) == at {
        hour
    } else {
        hour + 1
    }
}

/// A performance window cut where the rollups can answer it: the whole
/// hours inside it from the rollups, the rest (at most the two partial
/// hours at its edges) from the raw samples. The parts do not overlap and
/// together cover exactly `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowParts {
    /// Buckets `[first, last)` read from the rollups (empty when equal).
    pub whole_hours: (i64, i64),
    /// Time ranges `[from, to)` read from the samples (empty when equal).
    pub edges: [(DateTime<Utc>, DateTime<Utc>); 2],
}

impl WindowParts {
    pub fn of(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        let (first, last) = (first_hour_from(start), hour_of(end));
        if first < last {
            Self {
                whole_hours: (first, last),
                edges: [(start, hour_start(first)), (hour_start(last), end)],
            }
        } else {
            // No whole hour inside: the samples answer all of it.
            Self {
                whole_hours: (first, first),
                edges: [(start, end), (end, end)],
            }
        }
    }
}

/// The count and sums of one session's samples in one hour: what a rollup
/// row holds, and what a stream adds to it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HourTotals {
    pub hour: i64,
    pub samples: i64,
    pub hashrate_sum: f64,
    pub power_sum: f64,
    pub shares_accepted: i64,
    pub shares_rejected: i64,
    pub earnings_micros: i64,
}

impl HourTotals {
    /// A stream's samples added up per hour, in hour order. Only for samples
    /// a session has absorbed ([`Session::absorb`]): each sum is then at
    /// most the session's checked total, so none can overflow.
    pub fn of_samples(samples: &[Sample]) -> Vec<Self> {
        let mut hours: std::collections::BTreeMap<i64, Self> = std::collections::BTreeMap::new();
        for sample in samples {
            let hour = hour_of(sample.at);
            let totals = hours.entry(hour).or_insert(Self {
                hour,
                samples: 0,
                hashrate_sum: 0.0,
                power_sum: 0.0,
                shares_accepted: 0,
                shares_rejected: 0,
                earnings_micros: 0,
            });
            totals.samples += 1;
            totals.hashrate_sum += sample.hashrate_mhs;
            totals.power_sum += sample.power_watts;
            totals.shares_accepted += sample.shares_accepted;
            totals.shares_rejected += sample.shares_rejected;
            totals.earnings_micros += sample.earnings_micros;
        }
        hours.into_values().collect()
    }
}

/// A WatchSession call: the session's samples stored after sequence
/// `after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionWatch {
    pub session: Uuid,
    pub after: i64,
}

/// Samples of a session with their sequence (their row id: commit order).
pub type RecordedSamples = Vec<(i64, Sample)>;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Performance {
    pub key: String,
    pub sessions: i64,
    pub samples: i64,
    pub average_hashrate: f64,
    pub average_power: f64,
    /// Sums over many sessions, each of which fits an i64: wider, so no
    /// number of sessions can overflow them.
    pub shares_accepted: i128,
    pub shares_rejected: i128,
    pub earnings_micros: i128,
}

impl Performance {
    pub fn acceptance_rate(&self) -> f64 {
        let shares = self.shares_accepted + self.shares_rejected;
        if shares == 0 {
            0.0
        } else {
            self.shares_accepted as f64 / shares as f64
        }
    }

    pub fn hashrate_per_watt(&self) -> f64 {
        if self.average_power > 0.0 {
            self.average_hashrate / self.average_power
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn an_aligned_window_is_all_whole_hours() {
        let parts = WindowParts::of(at("2026-12-01T10:00:00Z"), at("2026-12-01T13:00:00Z"));
        assert_eq!(
            parts.whole_hours,
            (
                hour_of(at("2026-12-01T10:00:00Z")),
                hour_of(at("2026-12-01T13:00:00Z"))
            )
        );
        assert_eq!(parts.whole_hours.1 - parts.whole_hours.0, 3);
        for (from, to) in parts.edges {
            assert_eq!(from, to, "{parts:?}");
        }
    }

    #[test]
    fn a_window_off_the_hour_reads_its_two_partial_hours_from_the_samples() {
        let (start, end) = (
            at("2026-12-01T10:15:00.000001Z"),
            at("2026-12-01T13:59:59.999999Z"),
        );
        let parts = WindowParts::of(start, end);
        assert_eq!(hour_start(parts.whole_hours.0), at("2026-12-01T11:00:00Z"));
        assert_eq!(hour_start(parts.whole_hours.1), at("2026-12-01T13:00:00Z"));
        assert_eq!(
            parts.edges,
            [
                (start, at("2026-12-01T11:00:00Z")),
                (at("2026-12-01T13:00:00Z"), end)
            ]
        );
    }

    #[test]
    fn a_window_without_a_whole_hour_is_read_from_the_samples() {
        for (start, end) in [
            ("2026-12-01T10:15:00Z", "2026-12-01T10:45:00Z"),
            ("2026-12-01T10:15:00Z", "2026-12-01T11:45:00Z"),
            ("2026-12-01T10:00:00Z", "2026-12-01T10:59:59Z"),
        ] {
            let (start, end) = (at(start), at(end));
            let parts = WindowParts::of(start, end);
            assert_eq!(parts.whole_hours.0, parts.whole_hours.1, "{parts:?}");
            assert_eq!(parts.edges, [(start, end), (end, end)]);
        }
    }

    #[test]
    fn samples_add_up_per_hour_in_hour_order() {
        let sample = |time: &str, earnings_micros: i64| Sample {
            at: at(time),
            hashrate_mhs: 2.5,
            power_watts: 10.0,
            temperature_celsius: 60.0,
            shares_accepted: 3,
            shares_rejected: 1,
            difficulty: 1.0,
            network_hashrate_mhs: 1.0,
            earnings_micros,
            rig_sequence: None,
        };
        let hours = HourTotals::of_samples(&[
            sample("2026-12-01T11:00:00Z", 5),
            sample("2026-12-01T10:59:59.999999999Z", 7),
            sample("2026-12-01T11:30:00Z", 11),
        ]);
        assert_eq!(hours.len(), 2);
        assert_eq!(hour_start(hours[0].hour), at("2026-12-01T10:00:00Z"));
        assert_eq!((hours[0].samples, hours[0].earnings_micros), (1, 7));
        assert_eq!((hours[1].samples, hours[1].earnings_micros), (2, 16));
        assert_eq!(hours[1].hashrate_sum, 5.0);
        assert_eq!((hours[1].shares_accepted, hours[1].shares_rejected), (6, 2));
    }
}

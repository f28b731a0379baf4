//! The library's histograms (renewal round trips, campaign waits; see
//! [`elect_core::telemetry`]) for `elect run --metrics-addr`: a `metrics` recorder that keeps
//! histograms in Prometheus' cumulative buckets and nothing else — the CLI's gauges and
//! counters come from its own state ([`crate::status`]).
//!
//! Installed as the process's global recorder when the endpoint is served, unless the host
//! program installed its own: then the host's recorder has them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Upper bounds of the buckets, in seconds: from a loopback round trip to a long campaign.
const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// One histogram's buckets (cumulative on rendering), count and sum.
#[derive(Debug, Default)]
struct Buckets {
    counts: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    /// The sum, in nanoseconds (an atomic f64 would need a compare-and-swap loop).
    sum_nanos: AtomicU64,
}

impl metrics::HistogramFn for Buckets {
    fn record(&self, value: f64) {
        if let Some(i) = BOUNDS.iter().position(|bound| value <= *bound) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((value.max(0.0) * 1e9) as u64, Ordering::Relaxed);
    }
}

/// A histogram's name and labels.
type Series = (String, Vec<(String, String)>);

/// The histograms recorded so far, by name and labels.
#[derive(Debug, Default)]
pub(crate) struct Histograms {
    all: Mutex<BTreeMap<Series, Arc<Buckets>>>,
}

static INSTALLED: OnceLock<&'static Histograms> = OnceLock::new();

/// Makes the histograms recorder the global one, once; false if another recorder was there.
pub(crate) fn install() -> bool {
    if INSTALLED.get().is_some() {
        return true;
    }
    let histograms: &'static Histograms = Box::leak(Box::default());
    if metrics::set_global_recorder(histograms).is_err() {
        return false;
    }
    INSTALLED.set(histograms).is_ok()
}

/// The installed histograms in Prometheus' text format, or nothing.
pub(crate) fn render() -> String {
    INSTALLED.get().map_or_else(String::new, |h| h.render())
}

impl Histograms {
    fn render(&self) -> String {
        let all = self.all.lock().expect("histograms poisoned");
        let mut text = String::new();
        let mut described = None;
        for ((name, labels), buckets) in all.iter() {
            if described != Some(name) {
                let help = match name.as_str() {
                    "elect_renewal_rtt_seconds" => {
                        "Round trip of a session renewal the store answered."
                    }
                    "elect_campaign_wait_seconds" => "Time from campaigning to elected.",
                    _ => "A histogram of the elect library.",
                };
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
                described = Some(name);
            }
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let with = |extra: String| {
                let mut all = labels.clone();
                all.extend((!extra.is_empty()).then_some(extra));
                if all.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", all.join(","))
                }
            };
            let mut cumulative = 0;
            for (bound, count) in BOUNDS.iter().zip(&buckets.counts) {
                cumulative += count.load(Ordering::Relaxed);
                let le = with(format!("le=\"{bound}\""));
                text.push_str(&format!("{name}_bucket{le} {cumulative}\n"));
            }
            let count = buckets.count.load(Ordering::Relaxed);
            let inf = with("le=\"+Inf\"".to_owned());
            let sum = buckets.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            text.push_str(&format!("{name}_bucket{inf} {count}\n"));
            text.push_str(&format!("{name}_sum{} {sum}\n", with(String::new())));
            text.push_str(&format!("{name}_count{} {count}\n", with(String::new())));
        }
        text
    }
}

impl Recorder for Histograms {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let mut all = self.all.lock().expect("histograms poisoned");
        let buckets = all
            .entry((key.name().to_owned(), labels))
            .or_default()
            .clone();
        Histogram::from_arc(buckets)
    }
}

/// A label value in Prometheus' text format.
pub(crate) fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_sum_and_count() {
        let histograms = Histograms::default();
        metrics::with_local_recorder(&histograms, || {
            let h = metrics::histogram!("elect_renewal_rtt_seconds", "backend" => "etcd");
            h.record(0.002);
            h.record(0.002);
            h.record(0.3);
        });
        let text = histograms.render();
        assert!(
            text.contains("# TYPE elect_renewal_rtt_seconds histogram"),
            "{text}"
        );
        for line in [
            "elect_renewal_rtt_seconds_bucket{backend=\"etcd\",le=\"0.001\"} 0",
            "elect_renewal_rtt_seconds_bucket{backend=\"etcd\",le=\"0.0025\"} 2",
            "elect_renewal_rtt_seconds_bucket{backend=\"etcd\",le=\"0.25\"} 2",
            "elect_renewal_rtt_seconds_bucket{backend=\"etcd\",le=\"0.5\"} 3",
            "elect_renewal_rtt_seconds_bucket{backend=\"etcd\",le=\"+Inf\"} 3",
            "elect_renewal_rtt_seconds_count{backend=\"etcd\"} 3",
            "elect_renewal_rtt_seconds_sum{backend=\"etcd\"} 0.304",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}

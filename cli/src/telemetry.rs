//! What `dlock` shows of its own workings: logs (`-v`, `RUST_LOG`) and, with `--metrics`, a
//! summary of the library's metrics (`dlock_host::observe`) at exit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use serde_json::{Value, json};

/// Logs to stderr. Without `RUST_LOG`: warnings of the lock library (a failed extend `run`
/// will retry), as plain `dlock: ...` lines; `-v` adds what each lock operation did (`info`:
/// its span, logged when it ends), `-vv` every Redis call (`debug`), `-vvv` everything
/// (`trace`), with time, level and spans.
/// `RUST_LOG` (e.g. `dlock_host=debug`) overrides the level. Writing to a closed stderr is
/// silently dropped.
pub(crate) fn init_logs(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("dlock_host={level},dlock={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if verbose == 0 && std::env::var_os("RUST_LOG").is_none() {
        builder
            .without_time()
            .with_level(false)
            .with_target(false)
            .event_format(Plain)
            .try_init()
    } else {
        // Each lock operation and Redis call is a span: logged when it closes, with its
        // fields (key, outcome, ...) and how long it took.
        builder
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .try_init()
    };
}

/// `dlock: message` and nothing else, as the CLI's own messages read.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "dlock: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Every metric recorded in this process, for the summary: counters and the values of
/// histograms, by name and labels. Installed as the global recorder by [`Metrics::install`].
#[derive(Default)]
pub(crate) struct Metrics {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

/// The values one histogram recorded.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(value);
    }
}

/// A metric's name with its labels, `name{label=value,...}`.
fn render(key: &Key) -> String {
    let mut text = key.name().to_owned();
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if !labels.is_empty() {
        let _ = write!(text, "{{{}}}", labels.join(","));
    }
    text
}

impl Recorder for Metrics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Counter::from_arc(counters.entry(render(key)).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        Histogram::from_arc(histograms.entry(render(key)).or_default().clone())
    }
}

/// A summary of one histogram: count, mean, p50, p99, max.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Spread {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Metrics {
    /// Installs the process's recorder (once) and returns it.
    pub(crate) fn install() -> &'static Metrics {
        static METRICS: OnceLock<&'static Metrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let metrics: &'static Metrics = Box::leak(Box::default());
            let _ = metrics::set_global_recorder(metrics);
            metrics
        })
    }

    /// The value of the counter `name` (with its labels, as [`render`] writes them).
    pub(crate) fn counter(&self, name: &str) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.get(name).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The spread of the histogram `name` (with its labels).
    pub(crate) fn spread(&self, name: &str) -> Spread {
        let histograms = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        histograms.get(name).map_or_else(Spread::default, |h| {
            spread(&h.0.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// Every metric, as JSON: counters by name, histograms as their spread.
    pub(crate) fn to_json(&self) -> Value {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let histograms = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let counters: serde_json::Map<String, Value> = counters
            .iter()
            .map(|(name, c)| (name.clone(), json!(c.load(Ordering::Relaxed))))
            .collect();
        let histograms: serde_json::Map<String, Value> = histograms
            .iter()
            .map(|(name, h)| {
                let s = spread(&h.0.lock().unwrap_or_else(|e| e.into_inner()));
                let v = json!({ "count": s.count, "mean": s.mean, "p50": s.p50, "p99": s.p99, "max": s.max });
                (name.clone(), v)
            })
            .collect();
        json!({ "counters": counters, "histograms": histograms })
    }

    /// Every metric, one per line: counters with their value, histograms with their spread
    /// (durations, whose names end in `duration` or `held`, in milliseconds).
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, c) in self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{name} {}", c.load(Ordering::Relaxed));
        }
        for (name, h) in self
            .histograms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let s = spread(&h.0.lock().unwrap_or_else(|e| e.into_inner()));
            let base = name.split('{').next().unwrap_or(name);
            if base.ends_with("duration") || base.ends_with("held") {
                let _ = writeln!(
                    out,
                    "{name} count={} mean={:.3}ms p50={:.3}ms p99={:.3}ms max={:.3}ms",
                    s.count,
                    s.mean * 1e3,
                    s.p50 * 1e3,
                    s.p99 * 1e3,
                    s.max * 1e3
                );
            } else {
                let _ = writeln!(
                    out,
                    "{name} count={} mean={:.2} p50={} p99={} max={}",
                    s.count, s.mean, s.p50, s.p99, s.max
                );
            }
        }
        out
    }
}

fn spread(values: &[f64]) -> Spread {
    if values.is_empty() {
        return Spread::default();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at =
        |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Spread {
        count: sorted.len(),
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        p50: at(0.5),
        p99: at(0.99),
        max: sorted[sorted.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_are_kept_by_name_and_labels() {
        let m = Metrics::default();
        metrics::with_local_recorder(&m, || {
            metrics::counter!("c", "by" => "signal").increment(2);
            metrics::counter!("c", "by" => "signal").increment(1);
            for v in [1.0, 2.0, 3.0, 4.0] {
                metrics::histogram!("h").record(v);
            }
        });
        assert_eq!(m.counter("c{by=signal}"), 3);
        assert_eq!(m.counter("c"), 0);
        let s = m.spread("h");
        assert_eq!((s.count, s.p50, s.max), (4, 2.0, 4.0));
        assert_eq!(s.mean, 2.5);
        assert!(m.to_text().contains("c{by=signal} 3"));
    }
}

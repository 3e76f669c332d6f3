//! What a `dcengine load` run measured: the table for people and the JSON
//! object for scripts (field names documented in `perf/README.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::plan::CLASSES;

/// Version of the JSON object's layout (raised when a field changes
/// meaning or goes away; new fields may appear without it).
pub(crate) const SCHEMA: u32 = 1;

/// Quantiles of the latency curves in the JSON (`latency_us.curve`).
pub(crate) const CURVE: [f64; 10] = [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 0.99999, 1.0];

/// One delivery class's counts.
#[derive(Debug, Clone)]
pub(crate) struct ClassReport {
    /// Messages sent in the measured window.
    pub(crate) sent: u64,
    /// Deliveries those messages should make (sent × fan-out).
    pub(crate) expected: u64,
    /// Deliveries made.
    pub(crate) delivered: u64,
    /// One-way latency of each delivery, in µs.
    pub(crate) latency: Histogram<u64>,
}

/// CPU and memory of one side.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Usage {
    /// CPU seconds (user + system) in the measured window.
    pub(crate) cpu_s: Option<f64>,
    /// Peak resident set of the process, in KiB.
    pub(crate) peak_rss_kib: Option<u64>,
    /// Where the figures come from.
    pub(crate) source: &'static str,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The scenario as given (flags, echoed).
    pub(crate) scenario: Value,
    pub(crate) backend: String,
    /// Seconds of the measured window (after the warm-up).
    pub(crate) window_s: f64,
    pub(crate) size: usize,
    /// Message size of High senders.
    pub(crate) high_size: usize,
    /// Messages a second the senders were asked for (rate × senders), or
    /// `None` for open loop.
    pub(crate) offered_per_s: Option<f64>,
    /// Per class, in [`CLASSES`] order.
    pub(crate) classes: Vec<ClassReport>,
    /// Lossy messages the senders' full queues dropped.
    pub(crate) lossy_dropped_at_sender: u64,
    /// Lossy messages dropped at full receiver buffers.
    pub(crate) lossy_dropped_at_receiver: u64,
    /// Errors and failed checks, by code.
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) client: Usage,
    pub(crate) server: Usage,
    /// Joins made, and the seconds from the first join to the last
    /// participant seeing its whole call.
    pub(crate) joins: u64,
    pub(crate) setup_s: f64,
    /// The embedded server's counters (`HubStats`), if it is embedded.
    pub(crate) server_stats: Option<Value>,
}

fn name(i: usize) -> (String, String) {
    let (r, p) = CLASSES[i];
    (
        format!("{r:?}").to_lowercase(),
        format!("{p:?}").to_lowercase(),
    )
}

fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "count": h.len(),
        "min": h.min(),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "curve": CURVE.iter().map(|&q| json!([q, h.value_at_quantile(q)])).collect::<Vec<_>>(),
    })
}

impl Report {
    pub(crate) fn durable_lost(&self) -> u64 {
        self.classes[..2]
            .iter()
            .map(|c| c.expected.saturating_sub(c.delivered))
            .sum()
    }

    fn lossy(&self) -> (u64, u64) {
        let expected = self.classes[2..].iter().map(|c| c.expected).sum();
        let delivered = self.classes[2..].iter().map(|c| c.delivered).sum();
        (expected, delivered)
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.classes.iter().map(|c| c.delivered).sum()
    }

    fn sent(&self) -> u64 {
        self.classes.iter().map(|c| c.sent).sum()
    }

    fn per_s(&self, n: u64) -> f64 {
        if self.window_s > 0.0 {
            n as f64 / self.window_s
        } else {
            0.0
        }
    }

    /// Whether the run counts as a success: something was delivered, no
    /// Durable message was lost and no error was seen.
    pub(crate) fn ok(&self) -> bool {
        self.delivered() > 0 && self.durable_lost() == 0 && self.errors.is_empty()
    }

    /// Errors including the Durable loss, which is never silent.
    fn all_errors(&self) -> BTreeMap<String, u64> {
        let mut e = self.errors.clone();
        let lost = self.durable_lost();
        if lost > 0 {
            *e.entry("DurableLost".into()).or_default() += lost;
        }
        e
    }

    fn usage(u: &Usage, window_s: f64) -> Value {
        json!({
            "cpu_s": u.cpu_s.map(|c| (c * 1000.0).round() / 1000.0),
            "cpu_cores": u.cpu_s.filter(|_| window_s > 0.0).map(|c| (c / window_s * 1000.0).round() / 1000.0),
            "peak_rss_kib": u.peak_rss_kib,
            "source": u.source,
        })
    }

    /// Payload bytes delivered: each class's deliveries at its size (High
    /// classes at `high_size`; class index = lossy × 2 + high).
    fn delivered_bytes(&self) -> u64 {
        self.classes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if i % 2 == 1 {
                    self.high_size
                } else {
                    self.size
                };
                c.delivered * size as u64
            })
            .sum()
    }

    /// The JSON object (one line).
    pub(crate) fn json(&self) -> Value {
        let (lossy_expected, lossy_delivered) = self.lossy();
        let delivered = self.delivered();
        json!({
            "tool": "dcengine load",
            "schema": SCHEMA,
            "version": env!("CARGO_PKG_VERSION"),
            "scenario": self.scenario,
            "backend": self.backend,
            "window_s": (self.window_s * 1000.0).round() / 1000.0,
            "offered_messages_per_s": self.offered_per_s,
            "sent_messages": self.sent(),
            "delivered_messages": delivered,
            "delivered_bytes": self.delivered_bytes(),
            "delivered_messages_per_s": self.per_s(delivered).round(),
            "delivered_bytes_per_s": self.per_s(self.delivered_bytes()).round(),
            "durable_lost": self.durable_lost(),
            "lossy_expected": lossy_expected,
            "lossy_delivered": lossy_delivered,
            "lossy_loss": if lossy_expected > 0 {
                1.0 - lossy_delivered as f64 / lossy_expected as f64
            } else { 0.0 },
            "lossy_dropped_at_sender": self.lossy_dropped_at_sender,
            "lossy_dropped_at_receiver": self.lossy_dropped_at_receiver,
            "classes": self.classes.iter().enumerate().filter(|(_, c)| c.sent > 0 || c.delivered > 0).map(|(i, c)| {
                let (reliability, priority) = name(i);
                json!({
                    "reliability": reliability,
                    "priority": priority,
                    "sent": c.sent,
                    "expected": c.expected,
                    "delivered": c.delivered,
                    "delivered_per_s": self.per_s(c.delivered).round(),
                    "latency_us": percentiles(&c.latency),
                })
            }).collect::<Vec<_>>(),
            "errors": self.all_errors(),
            "client": Self::usage(&self.client, self.window_s),
            "server": Self::usage(&self.server, self.window_s),
            "setup": {
                "joins": self.joins,
                "seconds": (self.setup_s * 1000.0).round() / 1000.0,
                "joins_per_s": if self.setup_s > 0.0 { (self.joins as f64 / self.setup_s).round() } else { 0.0 },
            },
            "server_stats": self.server_stats,
            "ok": self.ok(),
        })
    }

    /// The table for people.
    pub(crate) fn table(&self) -> String {
        let mut t = String::new();
        let delivered = self.delivered();
        let _ = writeln!(
            t,
            "delivered {} messages in {:.2} s: {} msg/s, {} ({} B each), {} backend",
            delivered,
            self.window_s,
            si(self.per_s(delivered)),
            bytes_per_s(self.per_s(self.delivered_bytes())),
            self.size,
            self.backend,
        );
        let _ = writeln!(
            t,
            "{:<16} {:>10} {:>12} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "class",
            "sent",
            "delivered",
            "msg/s",
            "lost",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs"
        );
        for (i, c) in self.classes.iter().enumerate() {
            if c.sent == 0 && c.delivered == 0 {
                continue;
            }
            let (r, p) = name(i);
            let q = |x: f64| {
                if c.latency.is_empty() {
                    "-".to_string()
                } else {
                    c.latency.value_at_quantile(x).to_string()
                }
            };
            let _ = writeln!(
                t,
                "{:<16} {:>10} {:>12} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                format!("{r} {p}"),
                c.sent,
                c.delivered,
                si(self.per_s(c.delivered)),
                c.expected.saturating_sub(c.delivered),
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                if c.latency.is_empty() {
                    "-".into()
                } else {
                    c.latency.max().to_string()
                },
            );
        }
        let cpu = |u: &Usage| match (u.cpu_s, self.window_s > 0.0) {
            (Some(c), true) => format!("{:.2} cores", c / self.window_s),
            _ => "-".into(),
        };
        let rss = |u: &Usage| {
            u.peak_rss_kib
                .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        };
        let _ = writeln!(
            t,
            "client: {} CPU, peak RSS {} ({});  server: {} CPU, peak RSS {} ({})",
            cpu(&self.client),
            rss(&self.client),
            self.client.source,
            cpu(&self.server),
            rss(&self.server),
            self.server.source,
        );
        let (le, ld) = self.lossy();
        if le > 0 {
            let _ = writeln!(
                t,
                "Lossy: {:.3} % lost ({} of {}; {} dropped by full send queues)",
                100.0 * (1.0 - ld as f64 / le as f64),
                le.saturating_sub(ld),
                le,
                self.lossy_dropped_at_sender
            );
        }
        let _ = writeln!(
            t,
            "setup: {} joins in {:.2} s ({:.0}/s)",
            self.joins,
            self.setup_s,
            if self.setup_s > 0.0 {
                self.joins as f64 / self.setup_s
            } else {
                0.0
            }
        );
        let errors = self.all_errors();
        if errors.is_empty() {
            let _ = writeln!(t, "errors: none; Durable lost: 0");
        } else {
            let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(t, "ERRORS: {}", list.join(", "));
        }
        t
    }
}

/// 1234567.0 → "1.23 M".
pub(crate) fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn bytes_per_s(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1} MB/s", v / 1e6)
    } else {
        format!("{:.1} kB/s", v / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
        for &v in values {
            let _ = h.record(v);
        }
        h
    }

    fn report() -> Report {
        let empty = ClassReport {
            sent: 0,
            expected: 0,
            delivered: 0,
            latency: histogram(&[]),
        };
        Report {
            scenario: json!({"participants": 2}),
            backend: "IoUring".into(),
            window_s: 2.0,
            size: 100,
            high_size: 100,
            offered_per_s: None,
            classes: vec![
                ClassReport {
                    sent: 1000,
                    expected: 1000,
                    delivered: 1000,
                    latency: histogram(&[100, 200, 300]),
                },
                empty.clone(),
                ClassReport {
                    sent: 100,
                    expected: 200,
                    delivered: 150,
                    latency: histogram(&[50]),
                },
                empty,
            ],
            lossy_dropped_at_sender: 7,
            lossy_dropped_at_receiver: 0,
            errors: BTreeMap::new(),
            client: Usage {
                cpu_s: Some(1.0),
                peak_rss_kib: Some(2048),
                source: "process",
            },
            server: Usage {
                cpu_s: None,
                peak_rss_kib: None,
                source: "none",
            },
            joins: 2,
            setup_s: 0.5,
            server_stats: None,
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let j = report().json();
        for field in [
            "tool",
            "schema",
            "version",
            "scenario",
            "backend",
            "window_s",
            "sent_messages",
            "delivered_messages",
            "delivered_bytes",
            "delivered_messages_per_s",
            "delivered_bytes_per_s",
            "durable_lost",
            "lossy_expected",
            "lossy_delivered",
            "lossy_loss",
            "lossy_dropped_at_sender",
            "lossy_dropped_at_receiver",
            "classes",
            "errors",
            "client",
            "server",
            "setup",
            "server_stats",
            "ok",
        ] {
            assert!(j.get(field).is_some(), "{field}");
        }
        assert_eq!(j["delivered_messages"], 1150);
        assert_eq!(j["delivered_messages_per_s"], 575.0);
        assert_eq!(j["delivered_bytes_per_s"], 57500.0);
        assert_eq!(j["lossy_loss"], 0.25);
        assert_eq!(j["classes"].as_array().map(Vec::len), Some(2));
        let durable = &j["classes"][0];
        assert_eq!(
            (
                durable["reliability"].as_str(),
                durable["priority"].as_str()
            ),
            (Some("durable"), Some("normal"))
        );
        assert_eq!(durable["latency_us"]["p50"], 200);
        assert_eq!(
            durable["latency_us"]["curve"].as_array().map(Vec::len),
            Some(CURVE.len())
        );
        assert_eq!(j["client"]["cpu_cores"], 0.5);
        assert_eq!(j["server"]["cpu_cores"], Value::Null);
        assert_eq!(j["setup"]["joins_per_s"], 4.0);
        assert_eq!(j["ok"], true);
        assert!(!j.to_string().contains('\n'));
    }

    #[test]
    fn durable_loss_is_an_error() {
        let mut r = report();
        r.classes[0].delivered = 990;
        assert_eq!(r.durable_lost(), 10);
        assert!(!r.ok());
        let j = r.json();
        assert_eq!(j["errors"]["DurableLost"], 10);
        assert_eq!(j["ok"], false);
        assert!(r.table().contains("ERRORS: DurableLost 10"));
    }

    #[test]
    fn table_lists_the_classes_that_ran() {
        let t = report().table();
        assert!(t.contains("durable normal"), "{t}");
        assert!(t.contains("lossy normal"), "{t}");
        assert!(!t.contains("durable high"), "{t}");
        assert!(t.contains("575 msg/s"), "{t}");
        assert!(
            t.contains("Lossy: 25.000 % lost (50 of 200; 7 dropped"),
            "{t}"
        );
        assert!(t.contains("errors: none"), "{t}");
        assert_eq!(si(1_234_567.0), "1.23 M");
        assert_eq!(si(12_345.0), "12.3 k");
    }
}

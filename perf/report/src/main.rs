//! `perf-report DIR`: reads the JSON lines `perf/run.sh` wrote into DIR
//! (`*.jsonl`, one `{"scenario", "side", "round", "kind", "result"}` per
//! run), prints the A/B table (min/median/max per side, the ratios of ours
//! to each peer, the targets) and writes `DIR/summary.json` and the plots
//! (`DIR/plots/*.png` and `*.svg`): latency percentile curves, and
//! throughput and p99 against offered load.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::{Value, json};

/// One run's line.
struct Run {
    scenario: String,
    side: String,
    kind: String,
    result: Value,
}

/// The figure a side is compared by in a scenario: (name, value).
fn metric(scenario: &str, side: &str, r: &Value) -> Option<(&'static str, f64)> {
    let f = |k: &str| r.get(k).and_then(Value::as_f64);
    let bytes = scenario.contains("1200") || scenario == "wan";
    match side {
        // Ours, and its variants (`ours-before`, `ours-p2p`): `dcengine load`.
        _ if side.starts_with("ours") && bytes => Some(("bytes/s", f("delivered_bytes_per_s")?)),
        _ if side.starts_with("ours") => Some(("deliveries/s", f("delivered_messages_per_s")?)),
        "usrsctp" | "straightforward" if bytes => Some(("bytes/s", f("bytes_per_s")?)),
        "usrsctp" | "straightforward" => Some(("deliveries/s", f("messages_per_s")?)),
        _ if bytes => Some(("bytes/s", f("bytes_per_s")?)),
        _ => Some(("deliveries/s", f("datagrams_per_s")?)),
    }
}

fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((v[0], median, v[n - 1]))
}

fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The targets, as (scenario, text, check on the medians).
fn target(
    scenario: &str,
    medians: &BTreeMap<String, f64>,
    p99_half: Option<f64>,
) -> Option<String> {
    let ours = *medians.get("ours")?;
    let ratio = |peer: &str| medians.get(peer).map(|p| ours / p);
    let mark = |ok: bool| if ok { "met" } else { "SHORT" };
    match scenario {
        "p2p-100B" => {
            let u = ratio("usrsctp");
            let s = ratio("straightforward");
            Some(format!(
                "P1: ≥ 1,000,000 msg/s ({}: {}), ≥ 4× usrsctp ({}: {}), ≥ 6× straightforward ({}: {})",
                si(ours),
                mark(ours >= 1e6),
                u.map_or("-".into(), |r| format!("{r:.2}×")),
                mark(u.is_some_and(|r| r >= 4.0)),
                s.map_or("-".into(), |r| format!("{r:.2}×")),
                mark(s.is_some_and(|r| r >= 6.0)),
            ))
        }
        "p2p-1200B" => {
            let u = ratio("usrsctp");
            Some(format!(
                "P2: ≥ 400 MB/s ({:.1} MB/s: {}), ≥ 4× usrsctp ({}: {})",
                ours / 1e6,
                mark(ours >= 400e6),
                u.map_or("-".into(), |r| format!("{r:.2}×")),
                mark(u.is_some_and(|r| r >= 4.0)),
            ))
        }
        "fanout-63" => {
            let r = ratio("raw-forwarder");
            Some(format!(
                "P3: ≥ 50 % of the raw-UDP forwarder's deliveries/s ({}: {})",
                r.map_or("-".into(), |r| format!("{:.0} %", r * 100.0)),
                mark(r.is_some_and(|r| r >= 0.5)),
            ))
        }
        "wan" => {
            // Point to point crosses the path once, as iperf3's TCP does:
            // the target's comparison. Relayed through the server, ours
            // crosses it twice, beside TCP relayed the same way.
            let pct = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.1} %", r * 100.0));
            let p2p = medians.get("ours-p2p").copied();
            let tcp = medians.get("tcp").copied();
            let p2p_ratio = p2p.zip(tcp).map(|(o, t)| o / t);
            let relayed = ratio("tcp-relayed");
            let met = match p2p_ratio {
                Some(r) => r >= 0.8,
                None => ratio("tcp").is_some_and(|r| r >= 0.8),
            };
            Some(format!(
                "Durable bulk ≥ 80 % of TCP (iperf3) on the same path: point to point {} MB/s, {} of TCP; relayed through the server {:.2} MB/s, {} of TCP relayed the same way, {} of TCP direct: {}",
                p2p.map_or("-".into(), |b| format!("{:.2}", b / 1e6)),
                pct(p2p_ratio),
                ours / 1e6,
                pct(relayed),
                pct(ratio("tcp")),
                mark(met),
            ))
        }
        "relay-100B" | "latency-under-load" => Some(format!(
            "P4: relay p99 one-way ≤ 1 ms at 50 % of max load ({}: {})",
            p99_half.map_or("-".into(), |p| format!("{:.2} ms", p / 1e3)),
            mark(p99_half.is_some_and(|p| p <= 1000.0)),
        )),
        _ => None,
    }
}

fn read_runs(dir: &Path) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                eprintln!(
                    "perf-report: {}: a line that is not JSON, skipped",
                    f.display()
                );
                continue;
            };
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            runs.push(Run {
                scenario: s("scenario"),
                side: s("side"),
                kind: v
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("ab")
                    .to_string(),
                result: v.get("result").cloned().unwrap_or(Value::Null),
            });
        }
    }
    Ok(runs)
}

fn p99(r: &Value) -> Option<f64> {
    r.get("classes")?
        .get(0)?
        .get("latency_us")?
        .get("p99")?
        .as_f64()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("perf-report: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: perf-report RESULTS_DIR")?,
    );
    let runs = read_runs(&dir)?;
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| e.to_string())?;
    load_font();

    let mut scenarios: Vec<String> = runs.iter().map(|r| r.scenario.clone()).collect();
    scenarios.dedup();
    scenarios.sort();
    scenarios.dedup();
    let mut table = String::new();
    let mut summary = serde_json::Map::new();
    let _ = writeln!(
        table,
        "| scenario | side | metric | min | median | max | runs | ours / side (median) |"
    );
    let _ = writeln!(table, "|---|---|---|---:|---:|---:|---:|---:|");
    let mut targets = Vec::new();
    for sc in &scenarios {
        let ab: Vec<&Run> = runs
            .iter()
            .filter(|r| &r.scenario == sc && r.kind == "ab")
            .collect();
        let mut sides: Vec<String> = ab.iter().map(|r| r.side.clone()).collect();
        sides.sort();
        sides.dedup();
        // Ours first.
        sides.sort_by_key(|s| s != "ours");
        let mut medians = BTreeMap::new();
        let mut rows = Vec::new();
        for side in &sides {
            let values: Vec<f64> = ab
                .iter()
                .filter(|r| &r.side == side)
                .filter_map(|r| metric(sc, side, &r.result).map(|m| m.1))
                .collect();
            let name = ab
                .iter()
                .find(|r| &r.side == side)
                .and_then(|r| metric(sc, side, &r.result))
                .map_or("", |m| m.0);
            if let Some((min, med, max)) = stats(values.clone()) {
                medians.insert(side.clone(), med);
                rows.push((side.clone(), name, min, med, max, values.len()));
            }
        }
        let mut sc_summary = serde_json::Map::new();
        for (side, name, min, med, max, n) in rows {
            let ratio = medians.get("ours").map(|o| o / med);
            let _ = writeln!(
                table,
                "| {sc} | {side} | {name} | {} | {} | {} | {n} | {} |",
                si(min),
                si(med),
                si(max),
                if side == "ours" {
                    "1".into()
                } else {
                    ratio.map_or("-".into(), |r| format!("{r:.2}×"))
                }
            );
            sc_summary.insert(side.clone(), json!({"metric": name, "min": min, "median": med, "max": max, "runs": n, "ours_over_side": ratio}));
        }
        // Load sweep: offered rate against delivered and p99.
        let sweep: Vec<(f64, f64, f64)> = runs
            .iter()
            .filter(|r| &r.scenario == sc && r.kind == "sweep")
            .filter_map(|r| {
                let offered = r
                    .result
                    .get("offered_messages_per_s")
                    .and_then(Value::as_f64)?;
                let delivered = r
                    .result
                    .get("delivered_messages_per_s")
                    .and_then(Value::as_f64)?;
                Some((offered, delivered, p99(&r.result)?))
            })
            .collect();
        let p99_half = runs
            .iter()
            .filter(|r| &r.scenario == sc && r.kind == "half-load")
            .filter_map(|r| p99(&r.result))
            .collect::<Vec<_>>();
        let p99_half = stats(p99_half).map(|s| s.1);
        // Half-load runs that lost messages or failed (errors, nothing
        // delivered): the target is not met by a p99 of the others.
        let half_runs: Vec<&Run> = runs
            .iter()
            .filter(|r| &r.scenario == sc && r.kind == "half-load")
            .collect();
        let half_failed = half_runs
            .iter()
            .filter(|r| r.result.get("ok").and_then(Value::as_bool) != Some(true))
            .count();
        let p99_half = if half_failed > 0 { None } else { p99_half };
        if half_failed > 0 {
            targets.push(format!(
                "- {sc}: {half_failed} of {} runs at 50 % of max did not deliver cleanly (errors: {})",
                half_runs.len(),
                half_runs
                    .iter()
                    .map(|r| r.result.get("errors").map_or("-".into(), Value::to_string))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if let Some(t) = target(sc, &medians, p99_half) {
            targets.push(format!("- {sc}: {t}"));
            sc_summary.insert("target".into(), json!(t));
        }
        if let Some(p) = p99_half {
            sc_summary.insert("p99_us_at_half_load".into(), json!(p));
        }
        // wan: ours with larger buffers than the defaults, against TCP.
        let big: Vec<f64> = runs
            .iter()
            .filter(|r| &r.scenario == sc && r.kind == "big-buffers")
            .filter_map(|r| metric(sc, &r.side, &r.result).map(|m| m.1))
            .collect();
        if let Some((min, med, max)) = stats(big.clone()) {
            let ratio = medians.get("tcp").map(|t| med / t);
            let _ = writeln!(
                table,
                "| {sc} | ours, 8 MiB uplink and 16 MiB receive buffers | bytes/s | {} | {} | {} | {} | {} of tcp |",
                si(min),
                si(med),
                si(max),
                big.len(),
                ratio.map_or("-".into(), |r| format!("{r:.2}×")),
            );
            sc_summary.insert("big_buffers".into(), json!({"metric": "bytes/s", "min": min, "median": med, "max": max, "runs": big.len(), "over_tcp": ratio}));
        }
        // Priority: each class's latency per bulk size.
        let bulk: Vec<&Run> = runs
            .iter()
            .filter(|r| &r.scenario == sc && r.kind.starts_with("bulk-"))
            .collect();
        if !bulk.is_empty() {
            let _ = writeln!(
                table,
                "\n| {sc}: Normal message | class | p50 | p99 | max | delivered / sent | payload kbit/s |\n|---|---|---:|---:|---:|---:|---:|"
            );
            // High p99 behind 32 KiB Normal messages: over one shaped link
            // (P4 as stated) and over two (the sender's and the receiver's).
            let (mut one_hop, mut two_hops) = (Vec::new(), Vec::new());
            for r in &bulk {
                let rate = r
                    .result
                    .get("delivered_bytes_per_s")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    * 8.0
                    / 1e3;
                for c in r
                    .result
                    .get("classes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let g = |k: &str| {
                        c.get("latency_us")
                            .and_then(|l| l.get(k))
                            .and_then(Value::as_f64)
                            .unwrap_or(0.0)
                    };
                    let class = format!(
                        "{} {}",
                        c.get("priority").and_then(Value::as_str).unwrap_or("?"),
                        c.get("reliability").and_then(Value::as_str).unwrap_or("?")
                    );
                    if class.starts_with("high") && r.kind == "bulk-32768" {
                        two_hops.push(g("p99"));
                    }
                    if class.starts_with("high") && r.kind == "bulk-32768-one-hop" {
                        one_hop.push(g("p99"));
                    }
                    let _ = writeln!(
                        table,
                        "| {} B | {class} | {:.1} ms | {:.1} ms | {:.1} ms | {} / {} | {rate:.0} |",
                        r.kind
                            .trim_start_matches("bulk-")
                            .replace("-one-hop", " (one hop)"),
                        g("p50") / 1e3,
                        g("p99") / 1e3,
                        g("max") / 1e3,
                        c.get("delivered").and_then(Value::as_u64).unwrap_or(0),
                        c.get("sent").and_then(Value::as_u64).unwrap_or(0),
                    );
                }
            }
            let _ = writeln!(table);
            let two = stats(two_hops).map(|(_, med, _)| med / 1e3);
            if let Some((_, med, _)) = stats(one_hop) {
                let t = format!(
                    "P4: High p99 ≤ 20 ms while Normal saturates 1 Mbit/s ({:.1} ms behind 32 KiB Normal messages over one shaped link: {}; over two: {})",
                    med / 1e3,
                    if med <= 20_000.0 { "met" } else { "SHORT" },
                    two.map_or("-".into(), |t| format!("{t:.1} ms")),
                );
                targets.push(format!("- {sc}: {t}"));
                sc_summary.insert("target".into(), json!(t));
            } else if let Some(two) = two {
                let t = format!(
                    "P4: High p99 ≤ 20 ms while Normal saturates 1 Mbit/s ({two:.1} ms behind 32 KiB Normal messages over two shaped hops; no one-hop run)"
                );
                targets.push(format!("- {sc}: {t}"));
                sc_summary.insert("target".into(), json!(t));
            }
        }
        // Scale: the server against the number of associations.
        let scale = scale_points(&runs, sc);
        if !scale.is_empty() {
            let base = scale.first().copied();
            let _ = writeln!(
                table,
                "\n| {sc}: associations | server peak RSS | per association (over the smallest) | joins/s | server CPU (cores) |\n|---:|---:|---:|---:|---:|"
            );
            let mut rows = Vec::new();
            for &(n, rss, joins, cpu) in &scale {
                let per = base.filter(|b| n > b.0).map(|b| (rss - b.1) / (n - b.0));
                let _ = writeln!(
                    table,
                    "| {} | {:.1} MiB | {} | {} | {cpu:.3} |",
                    si(n),
                    rss / 1024.0,
                    per.map_or("-".into(), |p| format!("{p:.1} KiB")),
                    si(joins),
                );
                rows.push(json!({"associations": n, "server_peak_rss_kib": rss, "per_association_kib": per, "joins_per_s": joins, "server_cpu_cores": cpu}));
            }
            let _ = writeln!(table);
            let idle_cpu = stats(
                runs.iter()
                    .filter(|r| &r.scenario == sc && r.kind.starts_with("idle-"))
                    .filter_map(|r| r.result.get("server")?.get("cpu_cores")?.as_f64())
                    .collect(),
            )
            .map(|s| s.1);
            if let (Some(b), Some(&(n, rss, joins, busy_cpu))) = (base, scale.last())
                && n > b.0
            {
                let per = (rss - b.1) / (n - b.0);
                let cpu = idle_cpu.unwrap_or(busy_cpu);
                let cpu_what = if idle_cpu.is_some() {
                    "idle"
                } else {
                    "at 1 msg/s each"
                };
                let mark = |ok: bool| if ok { "met" } else { "SHORT" };
                let t = format!(
                    "P5: {} associations: ≤ 32 KiB each ({per:.1} KiB: {}), ≥ 5,000 setups/s ({}: {}), CPU ≤ 5 % of a core {cpu_what} ({:.1} %: {}; {:.1} % at 1 msg/s each)",
                    si(n),
                    mark(per <= 32.0),
                    si(joins),
                    mark(joins >= 5000.0),
                    cpu * 100.0,
                    mark(cpu <= 0.05),
                    busy_cpu * 100.0,
                );
                targets.push(format!("- {sc}: {t}"));
                sc_summary.insert("target".into(), json!(t));
            }
            sc_summary.insert("scale".into(), json!(rows));
            plot_scale(&plots, sc, &scale).map_err(|e| format!("{sc} scale plot: {e}"))?;
        }
        if !sweep.is_empty() {
            sc_summary.insert("sweep".into(), json!(sweep));
            plot_sweep(&plots, sc, &sweep).map_err(|e| format!("{sc} sweep plot: {e}"))?;
        }
        let curves: Vec<(String, Vec<(f64, f64)>)> = runs
            .iter()
            .filter(|r| &r.scenario == sc && r.side == "ours")
            .filter_map(|r| {
                let c = r
                    .result
                    .get("classes")?
                    .get(0)?
                    .get("latency_us")?
                    .get("curve")?
                    .as_array()?;
                let pts = c
                    .iter()
                    .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                    .filter(|(q, _)| *q < 1.0)
                    .collect();
                let label = match r.kind.as_str() {
                    "ab" => "open loop".to_string(),
                    "half-load" => "50 % of max".to_string(),
                    "sweep" => format!(
                        "{} msg/s offered",
                        si(r.result.get("offered_messages_per_s")?.as_f64()?)
                    ),
                    k => k.to_string(),
                };
                Some((label, pts))
            })
            .collect();
        if !curves.is_empty() {
            plot_latency(&plots, sc, &curves).map_err(|e| format!("{sc} latency plot: {e}"))?;
        }
        summary.insert(sc.clone(), Value::Object(sc_summary));
    }
    println!("{table}");
    for t in &targets {
        println!("{t}");
    }
    std::fs::write(dir.join("summary.json"), Value::Object(summary).to_string())
        .map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("table.md"),
        format!("{table}\n{}\n", targets.join("\n")),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "\nwrote {}/summary.json, table.md and plots/",
        dir.display()
    );
    Ok(())
}

/// Registers DejaVu Sans for the PNGs (SVGs name the font and need none).
fn load_font() {
    for path in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ] {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
            return;
        }
    }
    eprintln!("perf-report: no DejaVuSans.ttf; PNG text may be missing");
}

/// x of a quantile on a "nines" axis: 0.9 → 1, 0.99 → 2, …
fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-6).log10()
}

const COLORS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

fn plot_latency(dir: &Path, sc: &str, curves: &[(String, Vec<(f64, f64)>)]) -> Result<(), String> {
    let png = dir.join(format!("{sc}-latency.png"));
    let svg = dir.join(format!("{sc}-latency.svg"));
    draw_latency(
        BitMapBackend::new(&png, (800, 500)).into_drawing_area(),
        sc,
        curves,
    )?;
    draw_latency(
        SVGBackend::new(&svg, (800, 500)).into_drawing_area(),
        sc,
        curves,
    )
}

fn draw_latency<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    sc: &str,
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let ymax = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.1))
        .fold(10.0, f64::max)
        * 1.5;
    let mut chart = ChartBuilder::on(&area)
        .caption(
            format!("{sc}: one-way latency by percentile"),
            ("sans-serif", 22),
        )
        .margin(10)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..5.0, (1.0..ymax).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("µs")
        .x_label_formatter(&|x: &f64| {
            match (x * 10.0).round() as i32 {
                0 => "0",
                10 => "90",
                20 => "99",
                30 => "99.9",
                40 => "99.99",
                50 => "99.999",
                _ => "",
            }
            .to_string()
        })
        .x_labels(6)
        .draw()
        .map_err(e)?;
    // At most a handful of curves: the first of each label.
    let mut seen = Vec::new();
    for (label, pts) in curves {
        if seen.contains(label) || seen.len() >= COLORS.len() {
            continue;
        }
        let color = COLORS[seen.len()];
        seen.push(label.clone());
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(q, v)| (nines(q), v.max(1.0))),
                color.stroke_width(2),
            ))
            .map_err(e)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    area.present().map_err(e)
}

/// Medians per size of the `scale-N` runs of `sc`: (associations, server
/// peak RSS KiB, joins/s, server CPU cores), by size.
fn scale_points(runs: &[Run], sc: &str) -> Vec<(f64, f64, f64, f64)> {
    let mut by_n: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.scenario == sc) {
        if let Some(n) = r.kind.strip_prefix("scale-").and_then(|n| n.parse().ok()) {
            by_n.entry(n).or_default().push(&r.result);
        }
    }
    by_n.into_iter()
        .filter_map(|(n, rs)| {
            let med = |f: &dyn Fn(&Value) -> Option<f64>| {
                stats(rs.iter().filter_map(|r| f(r)).collect()).map(|s| s.1)
            };
            let rss = med(&|r| r.get("server")?.get("peak_rss_kib")?.as_f64())?;
            let joins = med(&|r| r.get("setup")?.get("joins_per_s")?.as_f64()).unwrap_or(0.0);
            let cpu = med(&|r| r.get("server")?.get("cpu_cores")?.as_f64()).unwrap_or(0.0);
            Some((n as f64, rss, joins, cpu))
        })
        .collect()
}

fn plot_scale(dir: &Path, sc: &str, pts: &[(f64, f64, f64, f64)]) -> Result<(), String> {
    let png = dir.join(format!("{sc}-rss.png"));
    let svg = dir.join(format!("{sc}-rss.svg"));
    draw_scale(
        BitMapBackend::new(&png, (800, 500)).into_drawing_area(),
        sc,
        pts,
    )?;
    draw_scale(
        SVGBackend::new(&svg, (800, 500)).into_drawing_area(),
        sc,
        pts,
    )
}

fn draw_scale<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    sc: &str,
    pts: &[(f64, f64, f64, f64)],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let xmax = pts.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let ymax = pts.iter().map(|p| p.1 / 1024.0).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&area)
        .caption(
            format!("{sc}: server RSS against associations"),
            ("sans-serif", 22),
        )
        .margin(10)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("associations")
        .y_desc("server peak RSS, MiB")
        .x_label_formatter(&|x: &f64| si(*x))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.1 / 1024.0)),
            BLUE.stroke_width(2),
        ))
        .map_err(e)?;
    chart
        .draw_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.1 / 1024.0), 4, BLUE.filled())),
        )
        .map_err(e)?;
    area.present().map_err(e)
}

fn plot_sweep(dir: &Path, sc: &str, sweep: &[(f64, f64, f64)]) -> Result<(), String> {
    let png = dir.join(format!("{sc}-load.png"));
    let svg = dir.join(format!("{sc}-load.svg"));
    draw_sweep(
        BitMapBackend::new(&png, (800, 500)).into_drawing_area(),
        sc,
        sweep,
    )?;
    draw_sweep(
        SVGBackend::new(&svg, (800, 500)).into_drawing_area(),
        sc,
        sweep,
    )
}

fn draw_sweep<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    sc: &str,
    sweep: &[(f64, f64, f64)],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let mut pts = sweep.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let xmax = pts.iter().map(|p| p.0.max(p.1)).fold(1.0, f64::max) * 1.1;
    let pmax = pts.iter().map(|p| p.2).fold(10.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&area)
        .caption(
            format!("{sc}: delivered and p99 against offered load"),
            ("sans-serif", 22),
        )
        .margin(10)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, 0.0..xmax)
        .map_err(e)?
        .set_secondary_coord(0.0..xmax, (1.0..pmax).log_scale());
    chart
        .configure_mesh()
        .x_desc("offered messages/s")
        .y_desc("delivered messages/s")
        .x_label_formatter(&|x: &f64| si(*x))
        .y_label_formatter(&|y: &f64| si(*y))
        .draw()
        .map_err(e)?;
    chart
        .configure_secondary_axes()
        .y_desc("p99 one-way µs")
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.1)),
            BLUE.stroke_width(2),
        ))
        .map_err(e)?
        .label("delivered/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.1), 3, BLUE.filled())),
        )
        .map_err(e)?;
    chart
        .draw_secondary_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.2.max(1.0))),
            RED.stroke_width(2),
        ))
        .map_err(e)?
        .label("p99 µs (right)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    area.present().map_err(e)
}

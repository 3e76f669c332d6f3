//! sctp-stacks: sctp-proto (vendored) against dcsctp, side by side, on the
//! same in-memory association pair (issue 14). See README.md.

mod alloc;
mod cases;
mod cpu;
mod dc;
mod link;
mod net;
mod proto;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use serde_json::json;

use crate::cases::Numbers;
use crate::dc::DcNet;
use crate::link::Spec;
use crate::net::{Mode, Net, Settings};
use crate::proto::ProtoNet;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// sctp-proto against dcsctp: the same in-memory association pair driven
/// by each, A/B interleaved.
#[derive(Parser, Debug)]
struct Args {
    /// Rounds; each round runs every case once with each stack (A then B).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Messages per throughput run at 100 B.
    #[arg(long, default_value_t = 200_000)]
    small: u64,
    /// Messages per throughput run at 1,200 B.
    #[arg(long, default_value_t = 50_000)]
    large: u64,
    /// Messages sent and not yet received by the application, at most.
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// Established idle associations.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// INITs in the flood.
    #[arg(long, default_value_t = 10_000)]
    inits: usize,
    /// 1,200-byte messages in each lossy-link run.
    #[arg(long, default_value_t = 2_000)]
    loss_messages: u64,
    /// One-way latency of the lossy link, ms (RTT is twice this).
    #[arg(long, default_value_t = 10)]
    one_way_ms: u64,
    /// Only the cases whose name contains one of these (comma-separated).
    #[arg(long)]
    only: Option<String>,
    /// Run sctp-proto (A).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    proto: bool,
    /// Run dcsctp (B).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    dc: bool,
    /// Seed of the loss pattern and the forged INITs (round r adds r).
    #[arg(long, default_value_t = 14)]
    seed: u64,
    /// The name dcsctp's numbers go under (run.sh runs a second build, with
    /// dcsctp's packet hex-dump patched out, as "dcsctp-nolog").
    #[arg(long, default_value = "dcsctp")]
    dcsctp_name: String,
    /// Where the JSON goes.
    #[arg(long, default_value = "results.json")]
    out: String,
}

/// (case, stack) -> metric -> (unit, values).
type Results =
    BTreeMap<(usize, String, &'static str), BTreeMap<&'static str, (&'static str, Vec<f64>)>>;

/// (case, metric) -> stack -> (unit, (min, median, max)).
type Rows =
    BTreeMap<(usize, String, &'static str), BTreeMap<String, (&'static str, (f64, f64, f64))>>;

fn record(r: &mut Results, order: usize, case: &str, stack: &'static str, n: Numbers) {
    let e = r.entry((order, case.to_string(), stack)).or_default();
    for (metric, unit, v) in n {
        e.entry(metric).or_insert((unit, Vec::new())).1.push(v);
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let mid = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (s[0], mid, s[s.len() - 1])
}

fn fmt(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 1.0 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    }
}

fn main() {
    let args = Args::parse();
    let settings = Settings::default();
    let wanted = |name: &str| {
        args.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|w| name.contains(w.trim())))
    };
    let load_before = cpu::loadavg();
    eprintln!("load average before: {load_before}");
    let template = cases::init_template(&settings);
    let mut results = Results::new();
    let dc_name: &'static str = args.dcsctp_name.clone().leak();
    let wall_limit = Duration::from_secs(120);
    let throughput_spec = |count: u64, size: usize, mode: Mode| Spec {
        count,
        size,
        mode,
        window: args.window,
        one_way: Duration::ZERO,
        loss: 0.0,
        seed: 0,
        virtual_limit: Duration::from_secs(3600),
        wall_limit,
    };
    for round in 0..args.rounds {
        eprintln!("round {} of {}", round + 1, args.rounds);
        let mut order = 0;
        for (mode, mode_name) in [
            (Mode::Reliable, "reliable ordered"),
            (Mode::Lossy, "lossy (unordered, rexmit 0)"),
        ] {
            for (size, count) in [(100usize, args.small), (1200, args.large)] {
                order += 1;
                let name = format!("{mode_name}, {size} B x {count}");
                if !wanted(&name) {
                    continue;
                }
                let spec = throughput_spec(count, size, mode);
                eprintln!("  {name}");
                if args.proto {
                    record(
                        &mut results,
                        order,
                        &name,
                        ProtoNet::NAME,
                        cases::throughput::<ProtoNet>(&settings, &spec),
                    );
                }
                if args.dc {
                    record(
                        &mut results,
                        order,
                        &name,
                        dc_name,
                        cases::throughput::<DcNet>(&settings, &spec),
                    );
                }
            }
        }
        order += 1;
        let name = format!("idle associations x {}", args.idle);
        if wanted(&name) {
            eprintln!("  {name}");
            if args.proto {
                record(
                    &mut results,
                    order,
                    &name,
                    ProtoNet::NAME,
                    cases::idle::<ProtoNet>(&settings, args.idle),
                );
            }
            if args.dc {
                record(
                    &mut results,
                    order,
                    &name,
                    dc_name,
                    cases::idle::<DcNet>(&settings, args.idle),
                );
            }
        }
        order += 1;
        let name = format!("INIT flood x {} (never answered)", args.inits);
        if wanted(&name) {
            eprintln!("  {name}");
            let seed = args.seed + round as u64;
            if args.proto {
                record(
                    &mut results,
                    order,
                    &name,
                    ProtoNet::NAME,
                    cases::init_flood_proto(&settings, &template, args.inits, seed),
                );
            }
            if args.dc {
                record(
                    &mut results,
                    order,
                    &name,
                    dc_name,
                    cases::init_flood_dc(&settings, &template, args.inits, seed),
                );
            }
        }
        for loss in [0.01, 0.10] {
            order += 1;
            let name = format!(
                "reliable ordered, {} % loss, {} ms RTT, 1200 B x {}",
                loss * 100.0,
                2 * args.one_way_ms,
                args.loss_messages
            );
            if !wanted(&name) {
                continue;
            }
            eprintln!("  {name}");
            let spec = Spec {
                count: args.loss_messages,
                size: 1200,
                mode: Mode::Reliable,
                window: args.window,
                one_way: Duration::from_millis(args.one_way_ms),
                loss,
                seed: args.seed + round as u64,
                virtual_limit: Duration::from_secs(600),
                wall_limit,
            };
            if args.proto {
                record(
                    &mut results,
                    order,
                    &name,
                    ProtoNet::NAME,
                    cases::lossy_link::<ProtoNet>(&settings, &spec),
                );
            }
            if args.dc {
                record(
                    &mut results,
                    order,
                    &name,
                    dc_name,
                    cases::lossy_link::<DcNet>(&settings, &spec),
                );
            }
        }
    }
    let load_after = cpu::loadavg();
    eprintln!("load average after: {load_after}");
    report(&args, &settings, &results, &load_before, &load_after);
}

fn report(args: &Args, s: &Settings, results: &Results, load_before: &str, load_after: &str) {
    // Human table: one row per case and metric, the two stacks side by side.
    let mut rows: Rows = BTreeMap::new();
    let mut json_cases = Vec::new();
    for ((order, case, stack), metrics) in results {
        for (metric, (unit, values)) in metrics {
            let st = stats(values);
            rows.entry((*order, case.clone(), metric))
                .or_default()
                .insert(stack.to_string(), (unit, st));
            json_cases.push(json!({
                "case": case, "stack": stack, "metric": metric, "unit": unit,
                "values": values, "min": st.0, "median": st.1, "max": st.2,
            }));
        }
    }
    println!(
        "| case | metric | unit | sctp-proto min / median / max | {0} min / median / max | {0} / sctp-proto (median) |",
        args.dcsctp_name
    );
    println!("|---|---|---|---|---|---|");
    for ((_, case, metric), by_stack) in &rows {
        let cell = |name: &str| {
            by_stack
                .get(name)
                .map(|(_, (a, b, c))| format!("{} / {} / {}", fmt(*a), fmt(*b), fmt(*c)))
                .unwrap_or_else(|| "-".into())
        };
        let unit = by_stack.values().next().map(|(u, _)| *u).unwrap_or("");
        let ratio = match (by_stack.get("sctp-proto"), by_stack.get(&args.dcsctp_name)) {
            (Some((_, (_, p, _))), Some((_, (_, d, _)))) if *p != 0.0 => format!("{:.2}", d / p),
            _ => "-".into(),
        };
        println!(
            "| {case} | {metric} | {unit} | {} | {} | {ratio} |",
            cell("sctp-proto"),
            cell(&args.dcsctp_name)
        );
    }
    let doc = json!({
        "rounds": args.rounds,
        "window_messages": args.window,
        "settings": {
            "mtu": s.mtu, "receive_buffer": s.receive_buffer, "send_buffer_dcsctp": s.send_buffer,
            "max_message": s.max_message, "streams": s.streams,
            "rto_initial_ms": s.rto.0.as_millis() as u64, "rto_min_ms": s.rto.1.as_millis() as u64,
            "rto_max_ms": s.rto.2.as_millis() as u64,
            "loss_one_way_ms": args.one_way_ms,
        },
        "machine": {
            "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_before": load_before, "loadavg_after": load_after,
        },
        "results": json_cases,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc).expect("json"))
        .expect("write the JSON");
    eprintln!("wrote {}", args.out);
}

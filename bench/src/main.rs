//! `fjord-bench`: drives one Kafka-compatible broker with a real librdkafka client (the `rdkafka`
//! crate) and prints produce/consume throughput, ack latency and broker RSS/CPU.
//!
//! One invocation = one workload: (re)create a topic, produce for `--duration` (max rate or a
//! paced `--rate-*`), count what the broker stored, consume it all from the beginning, delete
//! the topic. Each phase prints a machine-readable `RESULT key=value ...` line and a human line.
//! `bench/run.sh` runs the standard workloads against fjord and nisshi and summarises.

mod client;
mod consume;
mod group;
mod procstat;
mod produce;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;

use crate::procstat::{PhaseMeter, PhaseUsage};
use crate::produce::ProduceSpec;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Produce/consume benchmark for one Kafka-compatible broker (librdkafka)"
)]
struct Args {
    /// Broker bootstrap address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to (re)create; deleted first if it exists.
    #[arg(long, default_value = "fjord-bench")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Produce phase length in seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Offered rate in messages/s (paced). Default: maximum rate.
    #[arg(long, conflicts_with = "rate_mibs")]
    rate_msgs: Option<f64>,
    /// Offered rate in MiB/s of values (paced), converted with --value-size. Default: max rate.
    #[arg(long)]
    rate_mibs: Option<f64>,
    /// Value size in bytes (half random bytes, half zeros; no key).
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Producer acks.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 131_072)]
    batch_size: u32,
    /// Spread keyless messages over all partitions (sticky.partitioning.linger.ms=0) instead of
    /// librdkafka's default sticky partitioner, which fills one partition's batch at a time.
    #[arg(long)]
    spread: bool,
    /// PID of the broker process: sample its RSS (VmRSS) and CPU (utime+stime) from /proc.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Label copied into the output (e.g. the target name).
    #[arg(long, default_value = "broker")]
    label: String,
    /// Workload name copied into the output.
    #[arg(long, default_value = "-")]
    workload: String,
    /// Run number copied into the output.
    #[arg(long, default_value_t = 1)]
    run: u32,
    /// Do not delete/create the topic: use the existing (or broker-auto-created) one with its
    /// partition count, and keep it. For brokers without CreateTopics, e.g. librdkafka's mock.
    #[arg(long)]
    no_create_topic: bool,
    /// Also print, per second of the produce phase, the acks and the worst ack latency
    /// (to locate stalls behind a bad p99).
    #[arg(long)]
    timeline: bool,
    /// Skip the consume phase.
    #[arg(long)]
    no_consume: bool,
    /// Keep the topic afterwards (default: delete it to free the broker's disk or memory).
    #[arg(long)]
    keep_topic: bool,
    /// Seconds to wait for outstanding delivery reports after the produce phase.
    #[arg(long, default_value_t = 120)]
    flush_timeout: u64,
    /// Consume phase gives up after this many seconds without a message.
    #[arg(long, default_value_t = 30)]
    consume_idle_timeout: u64,
    /// Group workload: instead of one consumer with a manual assignment, this many consumers in
    /// one consumer group drain the topic (committing after every batch), then as many member
    /// processes join another group and one is killed with SIGKILL to time the takeover.
    #[arg(long)]
    group_members: Option<usize>,
    /// Session timeout (ms) of the killed-member test's group.
    #[arg(long, default_value_t = 6000)]
    member_session_ms: u32,
    /// Internal: run as one member process of the killed-member test, in this group.
    #[arg(long, hide = true)]
    member_of: Option<String>,
}

/// Accumulates `key=value` pairs for the machine-readable line.
struct Line(String);

impl Line {
    fn new(args: &Args, phase: &str) -> Self {
        let mut line = Line(String::from("RESULT"));
        line.kv("label", &args.label)
            .kv("workload", &args.workload)
            .kv("run", args.run)
            .kv("phase", phase)
            .kv("partitions", args.partitions)
            .kv("value_bytes", args.value_size);
        line
    }
    fn kv(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, " {key}={value}");
        self
    }
    fn opt(&mut self, key: &str, value: Option<f64>) -> &mut Self {
        match value {
            Some(v) => self.kv(key, format_args!("{v:.1}")),
            None => self.kv(key, "NA"),
        }
    }
    fn usage(&mut self, u: &PhaseUsage) -> &mut Self {
        let mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
        self.opt("broker_cpu_pct", u.broker_cpu_pct)
            .opt("broker_rss_peak_mib", mib(u.broker_rss_peak_kib))
            .opt("broker_rss_end_mib", mib(u.broker_rss_end_kib))
            .opt("client_cpu_pct", u.client_cpu_pct)
    }
}

fn fmt_opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}{unit}"))
}

fn human_usage(u: &PhaseUsage) -> String {
    let mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
    format!(
        "broker CPU {} RSS peak {} end {}; client CPU {}",
        fmt_opt(u.broker_cpu_pct, "%"),
        fmt_opt(mib(u.broker_rss_peak_kib), " MiB"),
        fmt_opt(mib(u.broker_rss_end_kib), " MiB"),
        fmt_opt(u.client_cpu_pct, "%"),
    )
}

fn run(args: &mut Args) -> Result<bool> {
    let tag = format!("[{} {} run {}]", args.label, args.workload, args.run);
    let rate = match (args.rate_msgs, args.rate_mibs) {
        (Some(m), _) => Some(m),
        (None, Some(mibs)) => Some(mibs * MIB / args.value_size as f64),
        (None, None) => None,
    };
    if rate.is_some_and(|r| r <= 0.0) {
        bail!("the offered rate must be positive");
    }

    // Idle RSS: the broker before this workload touches it (fresh if run.sh just started it).
    let idle_rss_mib = args
        .broker_pid
        .and_then(|p| procstat::rss_kib(&p.to_string()))
        .map(|k| k as f64 / 1024.0);
    if let Some(pid) = args.broker_pid
        && idle_rss_mib.is_none()
    {
        bail!("broker pid {pid} not found in /proc");
    }

    if args.no_create_topic {
        args.partitions = client::existing_topic_partitions(&args.bootstrap, &args.topic)?;
        args.keep_topic = true;
    } else {
        client::recreate_topic(&args.bootstrap, &args.topic, args.partitions)?;
    }
    let args = &*args;

    // Produce.
    let spec = ProduceSpec {
        topic: args.topic.clone(),
        value_size: args.value_size,
        duration: Duration::from_secs_f64(args.duration),
        rate,
        acks: args.acks.clone(),
        linger_ms: args.linger_ms,
        batch_size: args.batch_size,
        spread: args.spread,
        flush_timeout: Duration::from_secs(args.flush_timeout),
        timeline: args.timeline,
    };
    let meter = PhaseMeter::start(args.broker_pid);
    let p = produce::run(&args.bootstrap, &spec)?;
    let usage = meter.finish();
    let msgs_s = if p.secs > 0.0 { p.acked as f64 / p.secs } else { 0.0 };
    let mib_s = msgs_s * args.value_size as f64 / MIB;
    let q = |quantile: f64| p.latency_us.value_at_quantile(quantile) as f64 / 1000.0;
    let (p50, p99, p999, max) = if p.acked > 0 {
        (q(0.50), q(0.99), q(0.999), p.latency_us.max() as f64 / 1000.0)
    } else {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
    };
    let mut line = Line::new(args, "produce");
    line.kv("offered_msgs_s", rate.map_or(0, |r| r.round() as u64))
        .kv("sent", p.sent)
        .kv("acked", p.acked)
        .kv("errors", p.errors)
        .kv("secs", format_args!("{:.2}", p.secs))
        .kv("msgs_s", format_args!("{msgs_s:.0}"))
        .kv("mib_s", format_args!("{mib_s:.1}"))
        .kv("ack_p50_ms", format_args!("{p50:.2}"))
        .kv("ack_p99_ms", format_args!("{p99:.2}"))
        .kv("ack_p999_ms", format_args!("{p999:.2}"))
        .kv("ack_max_ms", format_args!("{max:.2}"))
        .opt("broker_rss_idle_mib", idle_rss_mib)
        .usage(&usage);
    println!("{}", line.0);
    let offered = rate.map_or_else(
        || "max rate".to_string(),
        |r| {
            format!(
                "offered {:.0} msgs/s ({:.1} MiB/s)",
                r,
                r * args.value_size as f64 / MIB
            )
        },
    );
    println!(
        "{tag} produce ({offered}, {} partitions): {msgs_s:.0} msgs/s, {mib_s:.1} MiB/s, \
         ack p50 {p50:.2} ms p99 {p99:.2} ms p99.9 {p999:.2} ms; {} acked, {} errors{}; \
         broker idle RSS {}; {}",
        args.partitions,
        p.acked,
        p.errors,
        p.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        fmt_opt(idle_rss_mib, " MiB"),
        human_usage(&usage),
    );
    if args.timeline {
        let mut line = format!("{tag} timeline (second: acks/worst ack ms):");
        for (second, (acks, worst_us)) in p.timeline.iter().enumerate() {
            let _ = write!(line, " {second}:{acks}/{:.1}", *worst_us as f64 / 1000.0);
        }
        println!("{line}");
    }
    let mut ok = p.errors == 0 && p.acked > 0;

    if let Some(members) = args.group_members {
        ok &= run_group(args, &tag, members, p.acked)?;
    } else if !args.no_consume {
        let stored = consume::stored_messages(&args.bootstrap, &args.topic, args.partitions)?;
        let meter = PhaseMeter::start(args.broker_pid);
        let c = consume::run(
            &args.bootstrap,
            &args.topic,
            args.partitions,
            stored,
            Duration::from_secs(args.consume_idle_timeout),
        )?;
        let usage = meter.finish();
        let msgs_s = if c.secs > 0.0 { c.msgs as f64 / c.secs } else { 0.0 };
        let mib_s = if c.secs > 0.0 {
            c.bytes as f64 / MIB / c.secs
        } else {
            0.0
        };
        // Every acknowledged record must be stored and read back; nothing unacknowledged
        // should be stored unless a delivery report was an error (then the broker may have it).
        let count_ok = c.msgs == stored && (stored == p.acked || (p.errors > 0 && stored >= p.acked));
        let mut line = Line::new(args, "consume");
        line.kv("msgs", c.msgs)
            .kv("stored", stored)
            .kv("acked", p.acked)
            .kv("count_ok", count_ok)
            .kv("errors", c.errors)
            .kv("secs", format_args!("{:.2}", c.secs))
            .kv("msgs_s", format_args!("{msgs_s:.0}"))
            .kv("mib_s", format_args!("{mib_s:.1}"))
            .usage(&usage);
        println!("{}", line.0);
        println!(
            "{tag} consume: {msgs_s:.0} msgs/s, {mib_s:.1} MiB/s; read {} of {} stored ({} acked): {}{}; {}",
            c.msgs,
            stored,
            p.acked,
            if count_ok { "count OK" } else { "COUNT MISMATCH" },
            if c.timed_out { " (stopped: idle timeout)" } else { "" },
            human_usage(&usage),
        );
        ok &= count_ok;
    }

    if !args.keep_topic {
        client::delete_topic(&args.bootstrap, &args.topic);
    }
    Ok(ok)
}

/// The group workload: drain with `members` consumers in a group, then time a killed member's
/// takeover.
fn run_group(args: &Args, tag: &str, members: usize, acked: u64) -> Result<bool> {
    let stored = consume::stored_messages(&args.bootstrap, &args.topic, args.partitions)?;
    let group = format!("fjord-bench-{}-{}", args.workload, args.run);
    let meter = PhaseMeter::start(args.broker_pid);
    let g = group::drain(
        &args.bootstrap,
        &args.topic,
        &group,
        members,
        args.partitions,
        stored,
        Duration::from_secs(args.consume_idle_timeout),
    )?;
    let usage = meter.finish();
    let msgs_s = g.msgs as f64 / g.secs;
    let mib_s = g.bytes as f64 / MIB / g.secs;
    let kill = group::kill_rebalance(
        &args.bootstrap,
        &args.topic,
        &format!("{group}-kill"),
        members,
        args.partitions,
        args.member_session_ms,
    )?;
    let count_ok = g.msgs >= stored && stored >= acked;
    let mut line = Line::new(args, "group");
    line.kv("members", members)
        .kv("msgs", g.msgs)
        .kv("stored", stored)
        .kv("count_ok", count_ok)
        .kv("secs", format_args!("{:.2}", g.secs))
        .kv("msgs_s", format_args!("{msgs_s:.0}"))
        .kv("mib_s", format_args!("{mib_s:.1}"))
        .kv("join_s", format_args!("{:.2}", g.join_secs))
        .kv("commits", g.commits)
        .kv("commit_p50_ms", format_args!("{:.2}", g.commit_p50_ms))
        .kv("commit_p99_ms", format_args!("{:.2}", g.commit_p99_ms))
        .kv("kill_rebalance_s", format_args!("{kill:.2}"))
        .kv("session_ms", args.member_session_ms)
        .usage(&usage);
    println!("{}", line.0);
    println!(
        "{tag} group of {members}: {msgs_s:.0} msgs/s, {mib_s:.1} MiB/s; all partitions assigned after {:.2} s; \
         {} commits p50 {:.2} ms p99 {:.2} ms; killed member's partitions taken over after {kill:.2} s \
         (session timeout {} ms); {}",
        g.join_secs,
        g.commits,
        g.commit_p50_ms,
        g.commit_p99_ms,
        args.member_session_ms,
        human_usage(&usage),
    );
    Ok(count_ok)
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(group) = args.member_of.clone() {
        return match group::member_main(&args.bootstrap, &args.topic, &group, args.member_session_ms) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fjord-bench member: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&mut args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("fjord-bench: the run completed with errors or a count mismatch");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("fjord-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

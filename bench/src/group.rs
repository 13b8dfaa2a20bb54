//! Consumer-group workload: N librdkafka consumers in one group drain the topic (throughput,
//! time to the first full assignment, synchronous commit latency), then N member processes join
//! a second group and one is killed with SIGKILL to time how long its partitions stay orphaned.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;

use crate::client::{base_config, print_log};

/// What the group workload measured.
#[derive(Debug)]
pub(crate) struct GroupResult {
    pub(crate) msgs: u64,
    pub(crate) bytes: u64,
    /// From subscribe to the last message.
    pub(crate) secs: f64,
    /// From subscribe until every partition was assigned to some member.
    pub(crate) join_secs: f64,
    pub(crate) commits: u64,
    pub(crate) commit_p50_ms: f64,
    pub(crate) commit_p99_ms: f64,
}

/// Records each member's current assignment (eager protocol: revoke, then assign).
struct GroupCtx {
    slot: usize,
    assignments: Arc<Mutex<Vec<BTreeSet<i32>>>>,
    print: bool,
}

impl ClientContext for GroupCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        print_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("librdkafka error: {error}: {reason}");
    }
}

impl ConsumerContext for GroupCtx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let set: BTreeSet<i32> = match rebalance {
            Rebalance::Assign(tpl) => tpl.elements().iter().map(|e| e.partition()).collect(),
            Rebalance::Revoke(_) | Rebalance::Error(_) => BTreeSet::new(),
        };
        if self.print {
            let list: Vec<String> = set.iter().map(i32::to_string).collect();
            println!("ASSIGNMENT {}", list.join(","));
        }
        self.assignments.lock().expect("lock")[self.slot] = set;
    }
}

fn group_consumer(
    bootstrap: &str,
    group: &str,
    session_ms: u32,
    slot: usize,
    assignments: Arc<Mutex<Vec<BTreeSet<i32>>>>,
    print: bool,
) -> Result<BaseConsumer<GroupCtx>> {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", session_ms.to_string())
        .set("heartbeat.interval.ms", (session_ms / 6).max(100).to_string())
        .set("fetch.max.bytes", (50 << 20).to_string())
        .set("max.partition.fetch.bytes", (10 << 20).to_string())
        .set("receive.message.max.bytes", (100 << 20).to_string());
    config
        .create_with_context(GroupCtx {
            slot,
            assignments,
            print,
        })
        .context("create group consumer")
}

/// `members` consumers in one fresh group read `expected` messages; each commits synchronously
/// after every poll batch that returned records.
pub(crate) fn drain(
    bootstrap: &str,
    topic: &str,
    group: &str,
    members: usize,
    partitions: i32,
    expected: u64,
    idle_timeout: Duration,
) -> Result<GroupResult> {
    let assignments = Arc::new(Mutex::new(vec![BTreeSet::new(); members]));
    let msgs = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let started = Instant::now();
    let mut threads = Vec::new();
    for slot in 0..members {
        let consumer = group_consumer(bootstrap, group, 10_000, slot, assignments.clone(), false)?;
        consumer.subscribe(&[topic]).context("subscribe")?;
        let (msgs, bytes, done, commits) = (msgs.clone(), bytes.clone(), done.clone(), commits.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let mut last_message = Instant::now();
            while !done.load(Ordering::Relaxed) {
                let mut got = 0u64;
                while let Some(result) = consumer.poll(Duration::from_millis(if got == 0 { 100 } else { 0 })) {
                    let m = result.context("consume")?;
                    got += 1;
                    bytes.fetch_add(m.payload_len() as u64, Ordering::Relaxed);
                    if got >= 2000 {
                        break;
                    }
                }
                if got == 0 {
                    if last_message.elapsed() > idle_timeout {
                        bail!("no message for {idle_timeout:?}");
                    }
                    continue;
                }
                last_message = Instant::now();
                let t = Instant::now();
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) => {
                        let us = t.elapsed().as_micros() as u64;
                        commits.lock().expect("lock").record(us.max(1)).ok();
                    }
                    // A commit racing a rebalance is refused; the records are re-read (at least once).
                    Err(e) => eprintln!("commit failed: {e}"),
                }
                if msgs.fetch_add(got, Ordering::Relaxed) + got >= expected {
                    done.store(true, Ordering::Relaxed);
                }
            }
            Ok(())
        }));
    }
    let mut join_secs = None;
    while !done.load(Ordering::Relaxed) && threads.iter().any(|t| !t.is_finished()) {
        if join_secs.is_none() {
            let union: BTreeSet<i32> = assignments.lock().expect("lock").iter().flatten().copied().collect();
            if union.len() == partitions as usize {
                join_secs = Some(started.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("consumer thread panicked")?;
    }
    let h = commits.lock().expect("lock");
    Ok(GroupResult {
        msgs: msgs.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
        secs,
        join_secs: join_secs.unwrap_or(f64::NAN),
        commits: h.len(),
        commit_p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        commit_p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// Child-process mode: one member that prints its assignment after every rebalance and keeps
/// polling until killed.
pub(crate) fn member_main(bootstrap: &str, topic: &str, group: &str, session_ms: u32) -> Result<()> {
    let assignments = Arc::new(Mutex::new(vec![BTreeSet::new()]));
    let consumer = group_consumer(bootstrap, group, session_ms, 0, assignments, true)?;
    consumer.subscribe(&[topic]).context("subscribe")?;
    loop {
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            eprintln!("member poll error: {e}");
        }
    }
}

/// Starts `members` member processes in a fresh group, waits until they cover every partition,
/// kills one with SIGKILL and returns the seconds until the survivors cover every partition.
pub(crate) fn kill_rebalance(
    bootstrap: &str,
    topic: &str,
    group: &str,
    members: usize,
    partitions: i32,
    session_ms: u32,
) -> Result<f64> {
    let exe = std::env::current_exe().context("current exe")?;
    let assignments = Arc::new(Mutex::new(vec![BTreeSet::<i32>::new(); members]));
    let mut children: Vec<Child> = Vec::new();
    for slot in 0..members {
        let mut child = Command::new(&exe)
            .args(["--bootstrap", bootstrap, "--topic", topic, "--member-of", group])
            .args(["--member-session-ms", &session_ms.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("spawn member")?;
        let stdout = child.stdout.take().expect("piped");
        let assignments = assignments.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(list) = line.strip_prefix("ASSIGNMENT") {
                    let set = list.trim().split(',').filter_map(|p| p.parse().ok()).collect();
                    assignments.lock().expect("lock")[slot] = set;
                }
            }
        });
        children.push(child);
    }
    let covered = |from: usize| {
        let a = assignments.lock().expect("lock");
        let union: BTreeSet<i32> = a[from..].iter().flatten().copied().collect();
        union.len() == partitions as usize && a[from..].iter().all(|s| !s.is_empty())
    };
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !covered(0) {
            if Instant::now() > deadline {
                bail!("members did not cover all partitions within 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_secs(1));
        children[0].kill().context("kill member")?;
        let killed = Instant::now();
        children[0].wait().ok();
        assignments.lock().expect("lock")[0].clear();
        while !covered(1) {
            if killed.elapsed() > Duration::from_secs(60) {
                bail!("survivors did not take over within 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(killed.elapsed().as_secs_f64())
    })();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

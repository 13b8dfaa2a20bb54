//! In-process quorum tests: real tonic over loopback (OS-assigned ports), a temp dir per node.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fjord_metadata::{BrokerId, ConfigResource, MetadataImage, MetadataRecord, PartitionId, TopicId};
use fjord_quorum::{Error, Quorum, QuorumConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ELECTION_MIN: Duration = Duration::from_millis(300);
const ELECTION_MAX: Duration = Duration::from_millis(600);

/// Log lines of every test in this binary, for asserting on refusals.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("fjord_quorum=info"))
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        std::io::stderr().write(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

fn config(id: u64, addr: &str, voters: &BTreeMap<u64, String>, dir: &Path, cluster: &str) -> QuorumConfig {
    let mut config = QuorumConfig::new(id, addr, voters.clone(), cluster, dir.join(format!("node-{id}")));
    config.election_timeout_min = ELECTION_MIN;
    config.election_timeout_max = ELECTION_MAX;
    config.heartbeat_interval = Duration::from_millis(50);
    config.write_timeout = Duration::from_secs(5);
    config
}

/// A started node and its server.
struct Node {
    quorum: Quorum,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl Node {
    async fn start(config: QuorumConfig, listener: TcpListener) -> Node {
        let quorum = Quorum::start(config).await.expect("quorum starts");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = quorum.clone();
        let server = tokio::spawn(async move {
            served
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("serves");
        });
        Node {
            quorum,
            stop: Some(stop),
            server,
        }
    }

    /// Stops the node as a crash would look to its peers: Raft and its server go away.
    async fn kill(mut self) {
        self.quorum.shutdown().await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
        let _ = self.server.await;
    }
}

/// Starts one node per voter (plus their listeners), all at once.
async fn start_cluster(dir: &Path, ids: &[u64], cluster: &str) -> (Vec<Node>, BTreeMap<u64, String>) {
    let mut listeners = Vec::new();
    for _ in ids {
        listeners.push(bind().await);
    }
    let voters: BTreeMap<u64, String> = ids
        .iter()
        .zip(&listeners)
        .map(|(id, (_, a))| (*id, a.clone()))
        .collect();
    let starts = ids.iter().zip(listeners).map(|(id, (listener, addr))| {
        let config = config(*id, &addr, &voters, dir, cluster);
        Node::start(config, listener)
    });
    let nodes = futures_join(starts.collect()).await;
    (nodes, voters)
}

/// Runs the futures concurrently (the voters of a multi-node cluster start together).
async fn futures_join<T: Send + 'static>(futures: Vec<impl Future<Output = T> + Send + 'static>) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn leader_of(nodes: &[Node], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(i) = nodes.iter().position(|n| n.quorum.is_leader()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn topic(name: &str, partitions: i32) -> (TopicId, Vec<MetadataRecord>) {
    let topic_id = TopicId::random();
    let mut records = vec![MetadataRecord::Topic {
        name: name.into(),
        topic_id,
    }];
    for p in 0..partitions {
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: PartitionId(p),
            replicas: vec![BrokerId(1)],
            isr: vec![BrokerId(1)],
            leader: BrokerId(1),
            leader_epoch: 0,
            partition_epoch: 0,
        });
    }
    (topic_id, records)
}

/// The controller's pattern: create `t<n>` where n is the number of topics the image has, so a
/// write that ran against a stale image, or was applied twice, breaks the sequence.
async fn create_next(quorum: &Quorum) -> Result<(Arc<MetadataImage>, (String, TopicId)), Error> {
    quorum
        .write_with(|image| {
            let name = format!("t{}", image.topic_count());
            if image.topic(&name).is_some() {
                return Err(Error::Raft(format!("{name} exists")));
            }
            let (id, records) = topic(&name, 2);
            Ok((records, (name, id)))
        })
        .await
}

/// [`create_next`] through whichever node leads, as a forwarding controller would: a write
/// refused with NotLeader (leadership moved, nothing was written) is sent to the new leader.
async fn create_via_leader(nodes: &[Node]) -> (String, TopicId) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = leader_of(nodes, Duration::from_secs(5)).await;
        match create_next(&nodes[leader].quorum).await {
            Ok((_, created)) => return created,
            Err(Error::NotLeader { .. }) if Instant::now() < deadline => {
                eprintln!("leadership moved during a write; retrying at the new leader");
            }
            Err(e) => panic!("write via leader: {e:?}"),
        }
    }
}

fn topics_of(image: &MetadataImage) -> BTreeMap<String, TopicId> {
    image.topics().map(|t| (t.name.clone(), t.id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_writes_and_restores_after_restart() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr) = bind().await;
    let voters = BTreeMap::from([(1, addr.clone())]);
    let cfg = config(1, &addr, &voters, dir.path(), "c1");
    // No server: a quorum of itself needs no peers.
    drop(listener);
    let started = Instant::now();
    let quorum = Quorum::start(cfg.clone()).await.expect("starts");
    assert!(quorum.is_leader());
    assert!(
        started.elapsed() < ELECTION_MAX * 2,
        "single voter took {:?}",
        started.elapsed()
    );
    let mut updates = quorum.subscribe();

    let (a, records) = topic("a", 3);
    let image = quorum.write(records.clone()).await.expect("write");
    assert_eq!(image.topic("a").expect("a").id, a);
    assert!(updates.has_changed().expect("open"), "subscribers see the new image");
    assert_eq!(updates.borrow_and_update().offset, image.offset);
    // The image offset is the Raft index: the membership and blank entries come first.
    assert!(image.offset >= 2, "offset {}", image.offset);
    // Records that do not apply are refused before they are proposed.
    let err = quorum.write(records).await.expect_err("duplicate topic");
    assert!(matches!(err, Error::Rejected(_)), "{err:?}");
    // A check-then-write that decides to write nothing writes nothing.
    let (same, n) = quorum
        .write_with(|image| Ok::<_, Error>((Vec::new(), image.topic_count())))
        .await
        .expect("no-op");
    assert_eq!((same.offset, n), (image.offset, 1));
    let image = quorum
        .write(vec![MetadataRecord::Config {
            resource: ConfigResource::Topic("a".into()),
            name: "retention.ms".into(),
            value: Some("1000".into()),
        }])
        .await
        .expect("config");
    let state = quorum.state().await.expect("state");
    assert_eq!(state.leader_id, Some(1));
    assert_eq!(state.high_watermark, image.offset as i64 + 1);
    assert_eq!(state.voters.len(), 1);
    assert_eq!(state.voters[0].log_end_offset, image.offset as i64 + 1);
    quorum.shutdown().await;
    assert!(matches!(quorum.write(Vec::new()).await, Err(Error::Shutdown)));

    let restarted = Quorum::start(cfg).await.expect("restarts");
    assert_eq!(*restarted.image(), *image, "the image is restored");
    let image = restarted.write(topic("b", 1).1).await.expect("writes after restart");
    assert_eq!(image.topic_count(), 2);
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_records_are_committed_once_on_a_fresh_single_voter() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let voters = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    let mut cfg = config(1, "127.0.0.1:1", &voters, dir.path(), "c1");
    let (id, records) = topic("migrated", 4);
    cfg.bootstrap_records = records;
    let quorum = Quorum::start(cfg.clone()).await.expect("starts");
    let image = quorum.image();
    assert_eq!(image.topic("migrated").expect("bootstrapped").id, id);
    assert_eq!(image.partition_count(), 4);
    quorum.shutdown().await;
    // Started again with the same bootstrap records (the old log is still there): not again.
    let quorum = Quorum::start(cfg).await.expect("restarts");
    assert_eq!(*quorum.image(), *image);
    quorum.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_fail_over_and_restart() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, voters) = start_cluster(dir.path(), &[1, 2, 3], "c3").await;
    let mut created = BTreeMap::new();
    for _ in 0..5 {
        let (name, id) = create_via_leader(&nodes).await;
        created.insert(name, id);
    }
    let leader = leader_of(&nodes, ELECTION_MAX * 10).await;
    let last = nodes[leader].quorum.image();
    // Followers refuse writes and name the leader.
    let leader_id = nodes[leader].quorum.node_id();
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != leader) {
        let err = node.quorum.write(topic("x", 1).1).await.expect_err("follower");
        let Error::NotLeader { leader: hint } = err else {
            panic!("node {i}: expected NotLeader, got {err:?}");
        };
        assert_eq!(hint, Some((leader_id, voters[&leader_id].clone())));
        let image = tokio::time::timeout(Duration::from_secs(5), node.quorum.wait_applied(last.offset))
            .await
            .expect("follower applies")
            .expect("applied");
        assert_eq!(topics_of(&image), created);
    }
    // DescribeQuorum's view from the leader: every voter caught up, with timestamps (asked
    // again if leadership moved in between: a new leader learns its followers' progress anew).
    let deadline = Instant::now() + Duration::from_secs(5);
    let leader = loop {
        let leader = leader_of(&nodes, Duration::from_secs(5)).await;
        let state = nodes[leader].quorum.state().await.expect("state");
        let complete = state.leader_id == Some(nodes[leader].quorum.node_id())
            && state.voters.iter().all(|v| {
                v.log_end_offset > last.offset as i64 && v.last_fetch_timestamp > 0 && v.last_caught_up_timestamp > 0
            });
        if complete {
            assert!(state.leader_epoch >= 1);
            assert!(state.high_watermark > last.offset as i64);
            assert_eq!(
                state.voters.iter().map(|v| v.replica_id).collect::<Vec<_>>(),
                vec![1, 2, 3]
            );
            assert!(state.observers.is_empty());
            break leader;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never reported every voter: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let leader_id = nodes[leader].quorum.node_id();
    // A follower does not know the others' progress.
    let follower_state = nodes[(leader + 1) % 3].quorum.state().await.expect("state");
    assert_eq!(follower_state.leader_id, Some(leader_id));
    assert!(follower_state.voters.iter().all(|v| v.log_end_offset == -1));

    // Kill the leader: a new one within 2 x the max election timeout.
    let killed = nodes.remove(leader);
    let killed_id = killed.quorum.node_id();
    let killed_at = Instant::now();
    killed.kill().await;
    let new_leader = leader_of(&nodes, ELECTION_MAX * 2).await;
    let failover = killed_at.elapsed();
    eprintln!("failover took {failover:?}");
    assert_ne!(nodes[new_leader].quorum.node_id(), killed_id);
    // Everything committed is there, and new writes see it (t5 follows t4).
    assert_eq!(topics_of(&nodes[new_leader].quorum.image()), created);
    for _ in 0..3 {
        let (_, (name, id)) = create_next(&nodes[new_leader].quorum)
            .await
            .expect("write via new leader");
        created.insert(name, id);
    }
    assert_eq!(created.len(), 8);
    assert!(created.contains_key("t7"));

    // Restart the whole cluster (the killed node included): everything is restored.
    let before = nodes[leader_of(&nodes, ELECTION_MAX * 10).await].quorum.image();
    for node in nodes.drain(..) {
        node.kill().await;
    }
    let mut restarted = Vec::new();
    for (id, addr) in &voters {
        let listener = TcpListener::bind(addr).await.expect("rebind");
        restarted.push(Node::start(config(*id, addr, &voters, dir.path(), "c3"), listener));
    }
    let nodes = futures_join(restarted).await;
    let leader = leader_of(&nodes, ELECTION_MAX * 10).await;
    let image = nodes[leader].quorum.write(Vec::new()).await.expect("leader image");
    assert_eq!(topics_of(&image), created);
    assert_eq!(image.offset, before.offset);
    for node in &nodes {
        let image = tokio::time::timeout(Duration::from_secs(5), node.quorum.wait_applied(before.offset))
            .await
            .expect("applies")
            .expect("applied");
        assert_eq!(topics_of(&image), created);
    }
    for node in nodes {
        node.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_learner_catches_up_through_a_snapshot() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr) = bind().await;
    let voters = BTreeMap::from([(1, addr.clone())]);
    let mut cfg = config(1, &addr, &voters, dir.path(), "cs");
    cfg.snapshot_every = 5;
    let voter = Node::start(cfg, listener).await;
    for _ in 0..23 {
        create_next(&voter.quorum).await.expect("write");
    }
    let image = voter.quorum.image();
    // The voter's log behind its snapshot is gone: a new node can only start from the snapshot.
    let log_path: PathBuf = dir.path().join("node-1/raft.log");
    eventually("the log is purged behind a snapshot", Duration::from_secs(5), || {
        std::fs::read(&log_path).is_ok_and(|b| b.get(8..18) == Some(b"{\"Purged\":".as_slice()))
    })
    .await;
    assert!(dir.path().join("node-1/snapshot.bin").exists());

    let (listener, learner_addr) = bind().await;
    let learner = Node::start(config(7, &learner_addr, &voters, dir.path(), "cs"), listener).await;
    assert!(!learner.quorum.is_leader());
    let mut updates = learner.quorum.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        updates.wait_for(|i| topics_of(i) == topics_of(&image)),
    )
    .await
    .expect("learner catches up")
    .expect("open");
    assert!(
        dir.path().join("node-7/snapshot.bin").exists(),
        "installed through a snapshot"
    );
    // A second node claiming the learner's id from another address is refused and gets nothing.
    let (listener, impostor_addr) = bind().await;
    let impostor_dir = tempfile::tempdir().expect("tempdir");
    let impostor = Node::start(config(7, &impostor_addr, &voters, impostor_dir.path(), "cs"), listener).await;
    assert_eq!(
        impostor.quorum.wait_for_leader(ELECTION_MAX * 3).await.ok(),
        None,
        "the impostor never hears from the leader"
    );
    assert_eq!(impostor.quorum.image().topic_count(), 0);
    assert!(
        String::from_utf8_lossy(&logs().lock().expect("logs")).contains("is already a learner at another address"),
        "the refusal is logged"
    );
    impostor.kill().await;
    // The leader lists it as an observer; it refuses writes and names the leader.
    let state = voter.quorum.state().await.expect("state");
    assert_eq!(
        state.observers.iter().map(|o| o.replica_id).collect::<Vec<_>>(),
        vec![7]
    );
    let err = learner.quorum.write(Vec::new()).await.expect_err("learner");
    assert!(matches!(err, Error::NotLeader { leader: Some((1, _)) }), "{err:?}");
    // It keeps following.
    let (_, (name, _)) = create_next(&voter.quorum).await.expect("write");
    eventually("the learner follows", Duration::from_secs(5), || {
        learner.quorum.image().topic(&name).is_some()
    })
    .await;
    learner.kill().await;
    let image = voter.quorum.image();
    voter.kill().await;
    // A restart starts from the snapshot, then the log after it.
    let listener = TcpListener::bind(&addr).await.expect("rebind");
    let mut cfg = config(1, &addr, &voters, dir.path(), "cs");
    cfg.snapshot_every = 5;
    let voter = Node::start(cfg, listener).await;
    assert_eq!(*voter.quorum.image(), *image, "restored from snapshot and log");
    voter.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused() {
    let logs = logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(bind().await);
    }
    let voters: BTreeMap<u64, String> = (1..=3).zip(listeners.iter().map(|(_, a)| a.clone())).collect();
    let mut nodes = Vec::new();
    for (id, (listener, addr)) in (1..=3).zip(listeners) {
        // Node 3 names the same voters but belongs to another cluster.
        let cluster = if id == 3 { "cluster-beta" } else { "cluster-alpha" };
        nodes.push(Node::start(config(id, &addr, &voters, dir.path(), cluster), listener).await);
    }
    create_via_leader(&nodes[..2]).await;
    // A learner of the other cluster asks to join and is refused as well.
    let (listener, addr) = bind().await;
    let outsider = Node::start(config(9, &addr, &voters, dir.path(), "cluster-beta"), listener).await;
    tokio::time::sleep(ELECTION_MAX * 3).await;
    assert_eq!(nodes[2].quorum.image().topic_count(), 0, "node 3 got nothing");
    assert_eq!(outsider.quorum.image().topic_count(), 0, "the outsider got nothing");
    let leader = leader_of(&nodes[..2], ELECTION_MAX * 10).await;
    let state = nodes[leader].quorum.state().await.expect("state");
    assert!(state.observers.is_empty(), "the outsider was not added");
    let node3 = state.voters.iter().find(|v| v.replica_id == 3).expect("voter 3");
    assert_eq!(node3.last_fetch_timestamp, -1);
    let text = String::from_utf8_lossy(&logs.lock().expect("logs")).to_string();
    assert!(
        text.lines()
            .any(|l| l.contains("cluster id mismatch") && l.contains("cluster-alpha") && l.contains("cluster-beta")),
        "no refusal log line naming both cluster ids"
    );
    outsider.kill().await;
    for node in nodes {
        node.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_list_that_disagrees_with_the_stored_membership_is_an_error() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let voters = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    let quorum = Quorum::start(config(1, "127.0.0.1:1", &voters, dir.path(), "cm"))
        .await
        .expect("starts");
    quorum.write(topic("a", 1).1).await.expect("write");
    quorum.shutdown().await;
    let grown = BTreeMap::from([
        (1, "127.0.0.1:1".to_string()),
        (2, "127.0.0.1:2".to_string()),
        (3, "127.0.0.1:3".to_string()),
    ]);
    let err = Quorum::start(config(1, "127.0.0.1:1", &grown, dir.path(), "cm"))
        .await
        .expect_err("voter list changed");
    let Error::MembershipMismatch { stored, configured, .. } = &err else {
        panic!("expected MembershipMismatch, got {err:?}");
    };
    assert_eq!((stored.as_slice(), configured.as_slice()), (&[1][..], &[1, 2, 3][..]));
    assert!(
        err.to_string().contains("stored quorum membership has voters [1]"),
        "{err}"
    );
    // The original voter list still starts.
    let quorum = Quorum::start(config(1, "127.0.0.1:1", &voters, dir.path(), "cm"))
        .await
        .expect("starts");
    assert!(quorum.image().topic("a").is_some());
    quorum.shutdown().await;
}

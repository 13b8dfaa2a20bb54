//! The admin gRPC API against a real `fjord-broker` process: topic create/describe/list/alter/
//! delete with their gRPC status codes, cluster description with rack, drain on one node, gRPC
//! health, and a clean exit on SIGTERM. Reflection is checked with grpcio in
//! broker/tests/python/test_admin_grpc.py.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fjord_api::v1 as pb;
use fjord_api::v1::admin_client::AdminClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A broker process, killed on drop.
struct BrokerProcess {
    child: Child,
    admin: String,
    kafka: String,
}

impl BrokerProcess {
    /// Starts a broker on free ports and connects to its admin API. Ports are picked by binding
    /// port 0 and releasing it, so another process can take one first: then the broker exits at
    /// start-up (or a different broker answers), and this retries on fresh ports.
    async fn start(data_dir: &Path, extra: &[&str]) -> (BrokerProcess, Channel) {
        for _ in 0..5 {
            let mut broker = Self::spawn(data_dir, extra);
            if let Some(channel) = broker.connect().await {
                return (broker, channel);
            }
        }
        panic!("could not start a broker on free ports after 5 attempts");
    }

    fn spawn(data_dir: &Path, extra: &[&str]) -> BrokerProcess {
        let (kafka, http, admin) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(data_dir.with_extension("log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fjord-broker"))
            .args(["--listen", &format!("127.0.0.1:{kafka}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(["--data-dir", data_dir.to_str().expect("utf8")])
            .args(["--set", &format!("admin.listen=\"127.0.0.1:{admin}\"")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawning fjord-broker");
        BrokerProcess {
            child,
            admin: format!("http://127.0.0.1:{admin}"),
            kafka: format!("127.0.0.1:{kafka}"),
        }
    }

    /// A channel to this broker's admin API, once it answers as this broker (its Kafka address);
    /// None if the process exited during start-up.
    async fn connect(&mut self) -> Option<Channel> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.child.try_wait().expect("try_wait").is_some() {
                return None;
            }
            if let Ok(channel) = Channel::from_shared(self.admin.clone()).expect("uri").connect().await {
                let cluster = AdminClient::new(channel.clone())
                    .describe_cluster(pb::DescribeClusterRequest {})
                    .await;
                match cluster {
                    Ok(c) if c.get_ref().brokers.iter().any(|b| b.kafka_address == self.kafka) => return Some(channel),
                    _ => {}
                }
            }
            assert!(Instant::now() < deadline, "admin port did not open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create(name: &str, partitions: Option<i32>) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        name: name.into(),
        partitions,
        ..Default::default()
    }
}

#[tokio::test]
async fn topic_lifecycle_and_error_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, channel) = BrokerProcess::start(&dir.path().join("data"), &[]).await;
    let mut admin = AdminClient::new(channel);

    let mut request = create("orders", Some(3));
    request.configs.insert("retention.ms".into(), "60000".into());
    let created = admin.create_topic(request).await.expect("create").into_inner();
    assert_eq!(created.name, "orders");
    assert_eq!(created.partitions, 3);
    assert_eq!(created.replication_factor, 1);
    assert_eq!(created.topic_id.len(), 36, "uuid: {}", created.topic_id);
    assert_eq!(created.configs.get("retention.ms").map(String::as_str), Some("60000"));
    assert_eq!(
        created.effective_configs.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );

    // Broker default partitions when absent.
    let defaulted = admin
        .create_topic(create("defaulted", None))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(defaulted.partitions, 1);

    let err = admin.create_topic(create("orders", Some(1))).await.expect_err("exists");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(
        err.metadata()
            .get(fjord_api::KAFKA_ERROR_METADATA_KEY)
            .and_then(|v| v.to_str().ok()),
        Some("TopicAlreadyExists")
    );
    for (bad, code) in [
        (create("bad/name", Some(1)), Code::InvalidArgument),
        (create("zero", Some(0)), Code::InvalidArgument),
        (
            pb::CreateTopicRequest {
                replication_factor: Some(3),
                ..create("rf3", Some(1))
            },
            Code::InvalidArgument,
        ),
        (
            pb::CreateTopicRequest {
                configs: [("retention.ms".to_string(), "soon".to_string())].into(),
                ..create("badconf", Some(1))
            },
            Code::InvalidArgument,
        ),
    ] {
        let err = admin.create_topic(bad).await.expect_err("refused");
        assert_eq!(err.code(), code, "{err:?}");
    }
    // validate_only creates nothing.
    let v = pb::CreateTopicRequest {
        validate_only: true,
        ..create("dry", Some(2))
    };
    admin.create_topic(v).await.expect("validates");
    let err = admin
        .describe_topic(pb::DescribeTopicRequest { name: "dry".into() })
        .await
        .expect_err("not created");
    assert_eq!(err.code(), Code::NotFound);

    let listed = admin
        .list_topics(pb::ListTopicsRequest {})
        .await
        .expect("list")
        .into_inner();
    let names: Vec<&str> = listed.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["defaulted", "orders"]);

    // Grow partitions and change configs in one call.
    let altered = admin
        .alter_topic(pb::AlterTopicRequest {
            name: "orders".into(),
            partitions: Some(6),
            set_configs: [("segment.bytes".to_string(), "1048576".to_string())].into(),
            delete_configs: vec!["retention.ms".into()],
            validate_only: false,
        })
        .await
        .expect("alter")
        .into_inner();
    assert_eq!(altered.partitions, 6);
    assert_eq!(altered.topic_id, created.topic_id, "the id survives alteration");
    assert_eq!(
        altered.configs.get("segment.bytes").map(String::as_str),
        Some("1048576")
    );
    assert!(!altered.configs.contains_key("retention.ms"));

    // Same count: a no-op. Fewer: FAILED_PRECONDITION and nothing changes.
    let same = pb::AlterTopicRequest {
        name: "orders".into(),
        partitions: Some(6),
        ..Default::default()
    };
    assert_eq!(admin.alter_topic(same).await.expect("no-op").into_inner().partitions, 6);
    let fewer = pb::AlterTopicRequest {
        name: "orders".into(),
        partitions: Some(2),
        ..Default::default()
    };
    let err = admin.alter_topic(fewer).await.expect_err("decrease");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // A bad config refuses the whole alteration: partitions stay at 6.
    let mixed = pb::AlterTopicRequest {
        name: "orders".into(),
        partitions: Some(9),
        set_configs: [("no.such.config".to_string(), "1".to_string())].into(),
        ..Default::default()
    };
    let err = admin.alter_topic(mixed).await.expect_err("bad config");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let now = admin
        .describe_topic(pb::DescribeTopicRequest { name: "orders".into() })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(now.partitions, 6);
    let err = admin
        .alter_topic(pb::AlterTopicRequest {
            name: "missing".into(),
            partitions: Some(2),
            ..Default::default()
        })
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);

    let deleted = admin
        .delete_topic(pb::DeleteTopicRequest { name: "orders".into() })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.topic_id, created.topic_id);
    let err = admin
        .delete_topic(pb::DeleteTopicRequest { name: "orders".into() })
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    let _ = &broker.kafka;
}

#[tokio::test]
async fn describe_cluster_drain_and_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut broker, channel) = BrokerProcess::start(
        &dir.path().join("data"),
        &[
            "--set",
            "node_id=7",
            "--set",
            "rack=\"zone-b\"",
            "--set",
            "network.shutdown_timeout=\"2s\"",
        ],
    )
    .await;
    let mut admin = AdminClient::new(channel.clone());
    let mut health = HealthClient::new(channel);

    let cluster = admin
        .describe_cluster(pb::DescribeClusterRequest {})
        .await
        .expect("describe cluster")
        .into_inner();
    assert_eq!(cluster.cluster_id.len(), 22);
    assert_eq!(cluster.controller_id, 7);
    let [b] = cluster.brokers.as_slice() else {
        panic!("one broker expected: {cluster:?}")
    };
    assert_eq!((b.id, b.rack.as_str()), (7, "zone-b"));
    assert_eq!(b.kafka_address, broker.kafka);
    assert_eq!(format!("http://{}", b.admin_address), broker.admin);
    assert_eq!(b.state(), pb::BrokerState::Running);

    // Unknown broker: NOT_FOUND, and nothing is remembered.
    let err = admin
        .drain_broker(pb::DrainBrokerRequest { broker_id: 3 })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let status = admin
        .get_drain_status(pb::GetDrainStatusRequest { broker_id: 7 })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.state(), pb::DrainState::NotDraining);

    // With a topic on the only broker, a drain is honestly blocked.
    admin.create_topic(create("t", Some(2))).await.expect("create");
    let status = admin
        .drain_broker(pb::DrainBrokerRequest { broker_id: 7 })
        .await
        .expect("drain")
        .into_inner();
    assert_eq!(status.state(), pb::DrainState::Blocked, "{status:?}");
    assert_eq!(status.partitions_remaining, 2);
    assert!(status.message.contains("nowhere to move"), "{}", status.message);
    let cluster = admin
        .describe_cluster(pb::DescribeClusterRequest {})
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(cluster.brokers[0].state(), pb::BrokerState::Draining);
    // A reverted scale-in cancels the drain: the broker is running again (idempotent), and an
    // unknown broker has no drain to cancel.
    for _ in 0..2 {
        let status = admin
            .cancel_drain(pb::CancelDrainRequest { broker_id: 7 })
            .await
            .expect("cancel")
            .into_inner();
        assert_eq!(status.state(), pb::DrainState::NotDraining, "{status:?}");
    }
    let cluster = admin
        .describe_cluster(pb::DescribeClusterRequest {})
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(cluster.brokers[0].state(), pb::BrokerState::Running);
    let err = admin
        .cancel_drain(pb::CancelDrainRequest { broker_id: 3 })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    admin
        .drain_broker(pb::DrainBrokerRequest { broker_id: 7 })
        .await
        .expect("drain again");
    // Once it holds nothing, the drain is done.
    admin
        .delete_topic(pb::DeleteTopicRequest { name: "t".into() })
        .await
        .expect("delete");
    let status = admin
        .get_drain_status(pb::GetDrainStatusRequest { broker_id: 7 })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.state(), pb::DrainState::Done, "{status:?}");
    assert_eq!(status.partitions_remaining, 0);

    for service in ["", fjord_api::ADMIN_SERVICE_NAME] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "service {service:?}");
    }
    let err = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), Code::NotFound);

    // Shutdown: a health watcher sees NOT_SERVING, and the process exits cleanly even though
    // the watch stream is still open.
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: fjord_api::ADMIN_SERVICE_NAME.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("first").expect("status");
    assert_eq!(first.status(), ServingStatus::Serving);
    broker.terminate();
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a status change before the stream ends");
    assert_eq!(
        next.expect("message").map(|m| m.status()),
        Some(ServingStatus::NotServing)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = broker.child.try_wait().expect("wait") {
            assert!(status.success(), "clean exit: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "broker did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

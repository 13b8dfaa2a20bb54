//! The Topic reconcile: finalizer → dereference the Cluster → describe the live topic through the
//! admin API → create, grow partitions or correct config drift → status. Partitions never shrink:
//! a live topic with more partitions than the spec is `Ready=False, reason=NotSupported` and
//! nothing is changed. The finalizer deletes the topic (policy Delete) and is removed without
//! blocking when the Cluster or its brokers are gone, so namespaces never hang. The Kafka topic
//! name is fixed at the first reconcile (status.topicName): a spec that changes it is refused
//! (`Ready=False, reason=TopicNameChanged`), never acted on.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_api::v1 as pb;
use fjord_crds::conditions::READY;
use fjord_crds::{Cluster, DeletionPolicy, Topic, TopicStatus};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tonic::Code;

use crate::admin::{AdminError, cluster_endpoint};
use crate::conditions::condition;
use crate::context::Context;
use crate::{Error, Result};

/// The finalizer the operator puts on every Topic.
pub const FINALIZER: &str = "fjord.dev/topic";

/// Reconciles one Topic.
pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action> {
    let name = topic.name_any();
    let namespace = topic.namespace().ok_or_else(|| Error::NoNamespace {
        kind: "Topic",
        name: name.clone(),
    })?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace);
    let has_finalizer = topic.finalizers().iter().any(|f| f == FINALIZER);
    if topic.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            cleanup(&topic, &ctx, &namespace).await?;
            remove_finalizer(&api, &topic).await?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        add_finalizer(&api, &topic).await?;
    }

    let generation = topic.metadata.generation;
    let previous = topic.status.clone().unwrap_or_default();
    let kafka_name = topic.kafka_name();
    let mut status = TopicStatus {
        observed_generation: generation,
        topic_name: Some(kafka_name.clone()),
        ..previous.clone()
    };
    let ready = |status: &mut TopicStatus, ok: bool, reason: &str, message: String| {
        status.conditions = vec![condition(&previous.conditions, READY, ok, reason, message, generation)];
    };

    // The Kafka topic a Topic manages is fixed by its first reconcile (status.topicName). The CRD
    // refuses a spec.topicName that changes it; an API server without that rule (or an edit of
    // the status) must not make the operator create a second topic and orphan the first.
    if let Some(managed) = previous.topic_name.clone()
        && managed != kafka_name
    {
        let message = format!(
            "spec.topicName makes the Kafka topic name {kafka_name}, but this Topic manages {managed}: \
             a Topic cannot move to another Kafka topic; nothing was changed (restore spec.topicName, \
             or create a new Topic for {kafka_name})"
        );
        let was = crate::conditions::find(&previous.conditions, READY).is_some_and(|c| c.reason == "TopicNameChanged");
        if !was {
            ctx.event(topic.as_ref(), true, "TopicNameChanged", "Reconcile", message.clone())
                .await;
        }
        status.topic_name = Some(managed);
        ready(&mut status, false, "TopicNameChanged", message);
        patch_status(&api, &name, &status).await?;
        // Fixed by editing the Topic, which triggers a reconcile.
        return Ok(Action::await_change());
    }

    if topic.spec.paused {
        ready(
            &mut status,
            false,
            "ReconciliationPaused",
            "spec.paused is true: nothing is changed on the cluster".into(),
        );
        patch_status(&api, &name, &status).await?;
        return Ok(Action::requeue(ctx.topic_resync));
    }

    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let cluster_name = &topic.spec.cluster_ref.name;
    let Some(cluster) = clusters.get_opt(cluster_name).await? else {
        ready(
            &mut status,
            false,
            "ClusterNotFound",
            format!("Cluster {cluster_name} does not exist in namespace {namespace}"),
        );
        patch_status(&api, &name, &status).await?;
        return Ok(Action::requeue(ctx.progress_requeue));
    };
    let endpoint = ctx.admin_endpoint(endpoint(&cluster, &namespace));
    let admin = &ctx.admin;

    let result = match admin.describe_topic(&endpoint, &kafka_name).await {
        Err(e) => Err(e),
        Ok(None) => {
            let request = pb::CreateTopicRequest {
                name: kafka_name.clone(),
                partitions: topic.spec.partitions,
                replication_factor: topic.spec.replication_factor,
                configs: managed_configs(&topic).into_iter().collect(),
                validate_only: false,
            };
            let created = admin.create_topic(&endpoint, request).await;
            if let Ok(t) = &created {
                ctx.event(
                    topic.as_ref(),
                    false,
                    "Created",
                    "CreateTopic",
                    format!(
                        "created topic {} with {} partitions (id {})",
                        t.name, t.partitions, t.topic_id
                    ),
                )
                .await;
            }
            created.map(|t| (t, None))
        }
        Ok(Some(live)) => converge(&ctx, &topic, &endpoint, live).await,
    };
    let action = match result {
        Ok((live, not_supported)) => {
            status.topic_id = Some(live.topic_id.clone());
            status.partitions = Some(live.partitions);
            status.replication_factor = Some(live.replication_factor);
            status.topic_configuration = live.configs.clone().into_iter().collect();
            match not_supported {
                Some(message) => {
                    let was = crate::conditions::find(&previous.conditions, READY)
                        .is_some_and(|c| c.reason == "NotSupported");
                    if !was {
                        ctx.event(topic.as_ref(), true, "NotSupported", "Reconcile", message.clone())
                            .await;
                    }
                    ready(&mut status, false, "NotSupported", message);
                }
                None => ready(
                    &mut status,
                    true,
                    "Ready",
                    format!("topic {} has {} partitions", live.name, live.partitions),
                ),
            }
            Action::requeue(ctx.topic_resync)
        }
        Err(AdminError::Unreachable(message)) => {
            ready(
                &mut status,
                false,
                "AdminApiUnavailable",
                format!("cannot reach the admin api of cluster {cluster_name}: {message}"),
            );
            Action::requeue(ctx.progress_requeue)
        }
        Err(AdminError::Status(s)) if s.code() == Code::InvalidArgument || s.code() == Code::FailedPrecondition => {
            // A spec the broker refuses (bad config value, bad replication factor): fixed by editing.
            ready(
                &mut status,
                false,
                "Rejected",
                format!("the broker refused the topic: {}", s.message()),
            );
            Action::requeue(ctx.topic_resync)
        }
        Err(AdminError::Status(s)) => {
            ready(
                &mut status,
                false,
                "AdminApiError",
                format!("{:?}: {}", s.code(), s.message()),
            );
            Action::requeue(ctx.progress_requeue)
        }
    };
    patch_status(&api, &name, &status).await?;
    Ok(action)
}

/// Configs the spec manages: keys with a value (null means "not managed here").
fn managed_configs(topic: &Topic) -> BTreeMap<String, String> {
    topic
        .spec
        .config
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect()
}

/// Brings an existing topic to the spec. Returns the live topic and, when the spec asks for
/// something impossible (fewer partitions, another replication factor), why nothing was changed.
async fn converge(
    ctx: &Context,
    topic: &Topic,
    endpoint: &str,
    live: pb::Topic,
) -> Result<(pb::Topic, Option<String>), AdminError> {
    if let Some(want) = topic.spec.partitions
        && want < live.partitions
    {
        return Ok((
            live.clone(),
            Some(format!(
                "topic {} has {} partitions and spec.partitions is {want}: partitions cannot be decreased; nothing was changed",
                live.name, live.partitions
            )),
        ));
    }
    if let Some(want) = topic.spec.replication_factor
        && want != live.replication_factor
    {
        return Ok((
            live.clone(),
            Some(format!(
                "topic {} has replication factor {} and spec.replicationFactor is {want}: changing it is not supported; nothing was changed",
                live.name, live.replication_factor
            )),
        ));
    }
    let grow = topic.spec.partitions.filter(|want| *want > live.partitions);
    let drift: BTreeMap<String, String> = managed_configs(topic)
        .into_iter()
        .filter(|(k, v)| live.configs.get(k) != Some(v))
        .collect();
    if grow.is_none() && drift.is_empty() {
        return Ok((live, None));
    }
    let request = pb::AlterTopicRequest {
        name: live.name.clone(),
        partitions: grow,
        set_configs: drift.clone().into_iter().collect(),
        delete_configs: Vec::new(),
        validate_only: false,
    };
    let altered = ctx.admin.alter_topic(endpoint, request).await?;
    if let Some(n) = grow {
        ctx.event(
            topic,
            false,
            "PartitionsIncreased",
            "AlterTopic",
            format!("partitions {} -> {n}", live.partitions),
        )
        .await;
    }
    if !drift.is_empty() {
        let keys: Vec<&str> = drift.keys().map(String::as_str).collect();
        ctx.event(
            topic,
            false,
            "ConfigUpdated",
            "AlterTopic",
            format!("set {}", keys.join(", ")),
        )
        .await;
    }
    Ok((altered, None))
}

fn endpoint(cluster: &Cluster, namespace: &str) -> String {
    let port = cluster.spec.listeners.as_ref().and_then(|l| l.admin).unwrap_or(9645);
    cluster_endpoint(&cluster.name_any(), namespace, port)
}

/// Deletes the Kafka topic (policy Delete) unless the Cluster or its brokers are gone. The topic
/// is the one this Topic manages (status.topicName), even if the spec names another.
async fn cleanup(topic: &Topic, ctx: &Context, namespace: &str) -> Result<()> {
    let kafka_name = topic
        .status
        .as_ref()
        .and_then(|s| s.topic_name.clone())
        .unwrap_or_else(|| topic.kafka_name());
    if topic.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            topic,
            false,
            "Retained",
            "DeleteTopic",
            format!("deletionPolicy Retain: topic {kafka_name} kept"),
        )
        .await;
        return Ok(());
    }
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), namespace);
    let cluster = match clusters.get_opt(&topic.spec.cluster_ref.name).await? {
        Some(c) if c.metadata.deletion_timestamp.is_none() => c,
        _ => {
            ctx.event(
                topic,
                true,
                "ClusterGone",
                "DeleteTopic",
                format!(
                    "Cluster {} is gone: finalizer removed without deleting topic {kafka_name}",
                    topic.spec.cluster_ref.name
                ),
            )
            .await;
            return Ok(());
        }
    };
    let endpoint = ctx.admin_endpoint(endpoint(&cluster, namespace));
    match ctx.admin.delete_topic(&endpoint, &kafka_name).await {
        Ok(existed) => {
            let note = if existed {
                format!("deleted topic {kafka_name}")
            } else {
                format!("topic {kafka_name} was already gone")
            };
            ctx.event(topic, false, "Deleted", "DeleteTopic", note).await;
            Ok(())
        }
        Err(AdminError::Unreachable(message)) if cluster.status.as_ref().is_none_or(|s| s.ready_brokers == 0) => {
            ctx.event(
                topic,
                true,
                "BrokersGone",
                "DeleteTopic",
                format!(
                    "no ready brokers in Cluster {} ({message}): finalizer removed without deleting topic {kafka_name}",
                    cluster.name_any()
                ),
            )
            .await;
            Ok(())
        }
        Err(e) => Err(e.into_error(&endpoint)),
    }
}

async fn add_finalizer(api: &Api<Topic>, topic: &Topic) -> Result<()> {
    let mut finalizers = topic.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch =
        serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": topic.resource_version()}});
    api.patch(&topic.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn remove_finalizer(api: &Api<Topic>, topic: &Topic) -> Result<()> {
    let finalizers: Vec<&String> = topic.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let patch =
        serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": topic.resource_version()}});
    api.patch(&topic.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn patch_status(api: &Api<Topic>, name: &str, status: &TopicStatus) -> Result<()> {
    // Server-side apply of the whole status: fields the operator no longer sets are removed.
    let body = serde_json::json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Topic", "status": status});
    api.patch_status(
        name,
        &PatchParams::apply(crate::cluster::build::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

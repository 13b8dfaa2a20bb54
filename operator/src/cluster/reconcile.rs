//! The Cluster reconcile: validate → plan → apply (ServiceAccount, ConfigMap, Services, PDB, then
//! the StatefulSets that mount the config) → drain brokers before any scale-in → status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fjord_api::v1 as pb;
use fjord_crds::cluster::{DrainStatus, RackStatus};
use fjord_crds::conditions::{DEGRADED, PROGRESSING, READY};
use fjord_crds::{Cluster, ClusterStatus};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::build::{self, BROKER_ID_BASE_ANNOTATION, FIELD_MANAGER, RACK_LABEL};
use super::plan::{BROKER_ID_STRIDE, RackPlan, rack_plans};
use super::validate::{ValidCluster, validate};
use crate::admin::{AdminError, broker_endpoint};
use crate::conditions::condition;
use crate::context::Context;
use crate::{Error, Result};

/// A StatefulSet of this cluster as observed.
#[derive(Debug, Clone)]
struct Observed {
    rack: String,
    name: String,
    replicas: i32,
    ready: i32,
    id_base: Option<i32>,
}

/// One broker that a scale-in removes.
#[derive(Debug, Clone)]
struct Leaving {
    rack: String,
    statefulset: String,
    ordinal: i32,
    id: i32,
}

/// Reconciles one Cluster.
pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action> {
    let name = cluster.name_any();
    let namespace = cluster.namespace().ok_or_else(|| Error::NoNamespace {
        kind: "Cluster",
        name: name.clone(),
    })?;
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let generation = cluster.metadata.generation;
    let previous = cluster.status.clone().unwrap_or_default();

    if cluster.spec.paused {
        let mut status = previous.clone();
        status.observed_generation = generation;
        status.conditions = vec![
            condition(
                &previous.conditions,
                READY,
                false,
                "ReconciliationPaused",
                "spec.paused is true: nothing is applied",
                generation,
            ),
            keep_or(
                &previous.conditions,
                PROGRESSING,
                false,
                "ReconciliationPaused",
                generation,
            ),
            keep_or(
                &previous.conditions,
                DEGRADED,
                false,
                "ReconciliationPaused",
                generation,
            ),
        ];
        patch_status(&api, &name, &status).await?;
        return Ok(Action::requeue(ctx.cluster_resync));
    }

    let valid = match validate(&cluster) {
        Ok(v) => v,
        Err(problems) => {
            let message = problems.join("; ");
            let was_invalid = crate::conditions::find(&previous.conditions, DEGRADED)
                .is_some_and(|c| c.reason == "InvalidSpec" && c.message == message);
            if !was_invalid {
                ctx.event(cluster.as_ref(), true, "InvalidSpec", "Validate", message.clone())
                    .await;
            }
            let mut status = previous.clone();
            status.observed_generation = generation;
            status.conditions = vec![
                condition(
                    &previous.conditions,
                    READY,
                    false,
                    "InvalidSpec",
                    message.clone(),
                    generation,
                ),
                condition(
                    &previous.conditions,
                    PROGRESSING,
                    false,
                    "InvalidSpec",
                    "waiting for the spec to be fixed",
                    generation,
                ),
                condition(&previous.conditions, DEGRADED, true, "InvalidSpec", message, generation),
            ];
            patch_status(&api, &name, &status).await?;
            // Fixed by editing the Cluster (which triggers a reconcile), not by retrying.
            return Ok(Action::await_change());
        }
    };

    let owner = cluster.controller_owner_ref(&()).ok_or_else(|| Error::NoNamespace {
        kind: "Cluster",
        name: name.clone(),
    })?;
    let observed = observe(&ctx, &valid).await?;
    let current: BTreeMap<String, i32> = observed.iter().map(|o| (o.rack.clone(), o.replicas)).collect();
    let bases: BTreeMap<String, i32> = observed
        .iter()
        .filter_map(|o| o.id_base.map(|b| (o.rack.clone(), b)))
        .collect();
    let plans = rack_plans(&valid, &current, &bases);

    // Config first, so a StatefulSet never starts pods against a missing or stale ConfigMap.
    apply(&ctx, &namespace, &build::service_account(&valid, &owner)).await?;
    apply(&ctx, &namespace, &build::config_map(&valid, &owner)).await?;
    apply(&ctx, &namespace, &build::headless_service(&valid, &owner)).await?;
    apply(&ctx, &namespace, &build::client_service(&valid, &owner)).await?;
    apply(&ctx, &namespace, &build::pod_disruption_budget(&valid, &owner)).await?;
    let hash = build::config_hash(&valid);
    if observed.is_empty() {
        let racks: Vec<String> = plans
            .iter()
            .map(|p| format!("{}={}", display_rack(&p.name), p.brokers))
            .collect();
        ctx.event(
            cluster.as_ref(),
            false,
            "Created",
            "Render",
            format!("rendering {} brokers over racks [{}]", valid.brokers, racks.join(", ")),
        )
        .await;
    }
    if previous.config_hash.as_deref().is_some_and(|h| h != hash) {
        ctx.event(
            cluster.as_ref(),
            false,
            "ConfigChanged",
            "RollBrokers",
            format!("broker config changed (hash {hash}): brokers roll one at a time"),
        )
        .await;
    }

    // Brokers that a scale-in (or a removed rack) takes away.
    let leaving = leaving_brokers(&plans, &observed);
    // Drains started earlier for brokers that now stay (the scale-in was reverted) are cancelled,
    // so those brokers do not go on draining.
    let staying: BTreeSet<i32> = previous
        .drain
        .iter()
        .flat_map(|d| d.broker_ids.iter().chain(&d.cancelling))
        .copied()
        .filter(|id| !leaving.iter().any(|l| l.id == *id))
        .collect();
    let (cancelling, cancel_message) = cancel_drains(&ctx, &cluster, &valid, &observed, &staying).await;
    let drain = if leaving.is_empty() {
        (!cancelling.is_empty()).then(|| DrainStatus {
            broker_ids: Vec::new(),
            state: "Cancelling".to_string(),
            message: cancel_message,
            cancelling,
        })
    } else {
        let d = drain(&ctx, &cluster, &valid, &leaving, &previous).await;
        Some(if d.state == "Done" && !cancelling.is_empty() {
            // Done with the leaving brokers; only the cancellations are left to make.
            DrainStatus {
                broker_ids: Vec::new(),
                state: "Cancelling".to_string(),
                message: cancel_message,
                cancelling,
            }
        } else {
            DrainStatus { cancelling, ..d }
        })
    };
    let drained = drain
        .as_ref()
        .is_none_or(|d| d.state == "Done" || d.state == "Cancelling");

    let mut applied = Vec::new();
    for plan in &plans {
        let now = current.get(&plan.name).copied().unwrap_or(0);
        // Shrink only once every leaving broker reports its drain done.
        let replicas = if plan.brokers < now && !drained {
            now
        } else {
            plan.brokers
        };
        let sts = build::stateful_set(&valid, plan, replicas, &hash, &owner);
        let result: StatefulSet = apply(&ctx, &namespace, &sts).await?;
        if replicas < now {
            ctx.event(
                cluster.as_ref(),
                false,
                "ScaledIn",
                "ScaleIn",
                format!(
                    "rack {} scaled from {now} to {replicas} brokers after their drain finished",
                    display_rack(&plan.name)
                ),
            )
            .await;
        } else if replicas > now && !observed.is_empty() {
            ctx.event(
                cluster.as_ref(),
                false,
                "ScaledOut",
                "ScaleOut",
                format!(
                    "rack {} scaled from {now} to {replicas} brokers",
                    display_rack(&plan.name)
                ),
            )
            .await;
        }
        applied.push((plan.clone(), result));
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut orphans_left = Vec::new();
    for o in observed.iter().filter(|o| !plans.iter().any(|p| p.name == o.rack)) {
        if drained {
            sts_api.delete(&o.name, &DeleteParams::default()).await?;
            ctx.event(
                cluster.as_ref(),
                false,
                "RackRemoved",
                "DeleteStatefulSet",
                format!(
                    "rack {} removed after its brokers drained: deleted StatefulSet {}",
                    display_rack(&o.rack),
                    o.name
                ),
            )
            .await;
        } else {
            orphans_left.push(o.clone());
        }
    }

    let mut pod_failures = Vec::new();
    for (_, sts) in &applied {
        let missing = sts.status.as_ref().map_or(0, |st| st.replicas) < sts.spec.replicas.unwrap_or(0);
        if missing && let Some(message) = failed_create(&ctx, &namespace, &sts.name_any()).await {
            pod_failures.push(format!("StatefulSet {} cannot create pods: {message}", sts.name_any()));
        }
    }
    let status = status(
        &valid,
        &previous,
        generation,
        &applied,
        &orphans_left,
        drain,
        hash,
        &pod_failures,
    );
    let failing = crate::conditions::find(&status.conditions, DEGRADED).filter(|c| c.reason == "PodCreationFailed");
    if let Some(failing) = failing
        && crate::conditions::find(&previous.conditions, DEGRADED).is_none_or(|c| c.reason != "PodCreationFailed")
    {
        ctx.event(
            cluster.as_ref(),
            true,
            "PodCreationFailed",
            "CreatePods",
            failing.message.clone(),
        )
        .await;
    }
    // A drain to cancel is retried soon too.
    let progressing = crate::conditions::find(&status.conditions, PROGRESSING).is_some_and(|c| c.status == "True")
        || status.drain.is_some();
    if !previous.conditions.is_empty() || !status.conditions.is_empty() {
        let became_ready = crate::conditions::find(&status.conditions, READY).is_some_and(|c| c.status == "True")
            && !crate::conditions::find(&previous.conditions, READY).is_some_and(|c| c.status == "True");
        if became_ready {
            ctx.event(
                cluster.as_ref(),
                false,
                "Ready",
                "Reconcile",
                format!("all {} brokers are ready", status.ready_brokers),
            )
            .await;
        }
    }
    patch_status(&api, &name, &status).await?;
    Ok(Action::requeue(if progressing {
        ctx.progress_requeue
    } else {
        ctx.cluster_resync
    }))
}

fn display_rack(rack: &str) -> &str {
    if rack.is_empty() { "(none)" } else { rack }
}

/// Keeps the previous condition of a type (refreshing its generation) or makes a new one.
fn keep_or(previous: &[Condition], type_: &str, status: bool, reason: &str, generation: Option<i64>) -> Condition {
    match crate::conditions::find(previous, type_) {
        Some(c) => Condition {
            observed_generation: generation,
            ..c.clone()
        },
        None => condition(previous, type_, status, reason, "", generation),
    }
}

/// The cluster's StatefulSets as they are now.
async fn observe(ctx: &Context, v: &ValidCluster) -> Result<Vec<Observed>> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let list = api
        .list(&ListParams::default().labels(&build::selector_string(&v.name)))
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|s| {
            let rack = s.labels().get(RACK_LABEL).cloned().unwrap_or_default();
            Observed {
                rack: if rack == "none" { String::new() } else { rack },
                name: s.name_any(),
                replicas: s.spec.replicas.unwrap_or(1),
                ready: s.status.as_ref().and_then(|st| st.ready_replicas).unwrap_or(0),
                id_base: s
                    .annotations()
                    .get(BROKER_ID_BASE_ANNOTATION)
                    .and_then(|b| b.parse().ok()),
            }
        })
        .collect())
}

/// Brokers above each rack's planned count (a StatefulSet removes its highest ordinals), plus
/// every broker of a rack no longer in the spec.
fn leaving_brokers(plans: &[RackPlan], observed: &[Observed]) -> Vec<Leaving> {
    let mut out = Vec::new();
    for o in observed {
        let keep = plans.iter().find(|p| p.name == o.rack).map_or(0, |p| p.brokers);
        let base = o.id_base.unwrap_or(0);
        for ordinal in keep..o.replicas {
            out.push(Leaving {
                rack: o.rack.clone(),
                statefulset: o.name.clone(),
                ordinal,
                id: base + ordinal,
            });
        }
    }
    out
}

/// Asks every leaving broker to drain and summarises their progress.
async fn drain(
    ctx: &Context,
    cluster: &Cluster,
    v: &ValidCluster,
    leaving: &[Leaving],
    previous: &ClusterStatus,
) -> DrainStatus {
    let ids: Vec<i32> = leaving.iter().map(|l| l.id).collect();
    let newly = previous.drain.as_ref().is_none_or(|d| d.broker_ids != ids);
    if newly {
        ctx.event(
            cluster,
            false,
            "DrainStarted",
            "Drain",
            format!("draining brokers {ids:?} before removing their pods"),
        )
        .await;
    }
    let mut waiting = Vec::new();
    let mut blocked = Vec::new();
    for l in leaving {
        let pod = format!("{}-{}", l.statefulset, l.ordinal);
        let endpoint = ctx.admin_endpoint(broker_endpoint(
            &pod,
            &v.headless_service_name(),
            &v.namespace,
            v.ports.admin,
        ));
        match ctx.admin.drain_broker(&endpoint, l.id).await {
            Ok(s) => match s.state() {
                pb::DrainState::Done => {}
                pb::DrainState::Blocked => blocked.push(format!(
                    "broker {} (rack {}): {}",
                    l.id,
                    display_rack(&l.rack),
                    s.message
                )),
                _ => waiting.push(format!("broker {}: {} partitions left", l.id, s.partitions_remaining)),
            },
            // Not a broker of the cluster (it never registered): it holds nothing, so it is drained.
            Err(AdminError::Status(s)) if s.code() == tonic::Code::NotFound => {
                tracing::info!(
                    broker = l.id,
                    message = s.message(),
                    "broker is not in the cluster: nothing to drain"
                );
            }
            Err(AdminError::Unreachable(message)) => {
                if never_ran(ctx, &v.namespace, &pod).await {
                    tracing::info!(broker = l.id, %pod, "broker pod never ran: nothing to drain");
                } else {
                    waiting.push(format!("broker {}: admin api unreachable ({message})", l.id));
                }
            }
            Err(e) => waiting.push(format!("broker {}: admin api error ({})", l.id, e.message())),
        }
    }
    let (state, message) = if !blocked.is_empty() {
        (
            "Blocked",
            blocked.into_iter().chain(waiting).collect::<Vec<_>>().join("; "),
        )
    } else if !waiting.is_empty() {
        ("InProgress", waiting.join("; "))
    } else {
        ("Done", format!("brokers {ids:?} hold no partitions"))
    };
    if state == "Done" {
        ctx.event(cluster, false, "DrainDone", "Drain", message.clone()).await;
    } else if state == "Blocked" && previous.drain.as_ref().is_none_or(|d| d.state != "Blocked") {
        ctx.event(cluster, true, "DrainBlocked", "Drain", message.clone()).await;
    }
    DrainStatus {
        broker_ids: ids,
        state: state.to_string(),
        message,
        cancelling: Vec::new(),
    }
}

/// True when a broker pod certainly holds no data because it never ran: neither the pod nor its
/// volume exists, or the pod has not started a container yet (no restart, no running or
/// terminated state) and its volume was made for this pod (not kept from an earlier one). Any
/// failure to tell counts as "may hold data".
async fn never_ran(ctx: &Context, namespace: &str, pod_name: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let (Ok(pod), Ok(claim)) = (
        pods.get_opt(pod_name).await,
        claims.get_opt(&format!("data-{pod_name}")).await,
    ) else {
        return false;
    };
    let Some(pod) = pod else {
        return claim.is_none();
    };
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|statuses| {
            statuses.iter().any(|c| {
                c.restart_count > 0
                    || c.started == Some(true)
                    || c.state
                        .as_ref()
                        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                    || c.last_state.as_ref().is_some_and(|s| s.terminated.is_some())
            })
        });
    if started {
        return false;
    }
    let created = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.creation_timestamp.as_ref().map(|t| t.0.as_second())
    };
    match claim {
        None => true,
        // The StatefulSet controller makes a pod's claim just before the pod.
        Some(claim) => match (created(&claim.metadata), created(&pod.metadata)) {
            (Some(c), Some(p)) => c >= p - 60,
            _ => false,
        },
    }
}

/// The message of the latest FailedCreate event of a StatefulSet from the last ten minutes (the
/// StatefulSet controller retries and repeats it while pods cannot be created). None if there is
/// none or events cannot be listed.
async fn failed_create(ctx: &Context, namespace: &str, statefulset: &str) -> Option<String> {
    use k8s_openapi::api::core::v1::Event;
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("involvedObject.kind=StatefulSet,involvedObject.name={statefulset},reason=FailedCreate");
    let events = match api.list(&ListParams::default().fields(&selector)).await {
        Ok(list) => list.items,
        Err(error) => {
            tracing::warn!(%error, statefulset, "listing StatefulSet events failed");
            return None;
        }
    };
    let seen = |e: &Event| {
        [
            e.last_timestamp.as_ref().map(|t| t.0),
            e.event_time.as_ref().map(|t| t.0),
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| t.0),
            e.metadata.creation_timestamp.as_ref().map(|t| t.0),
        ]
        .into_iter()
        .flatten()
        .max()
    };
    let recent = k8s_openapi::jiff::Timestamp::now().as_second() - 600;
    events
        .iter()
        .filter_map(|e| seen(e).map(|t| (t, e)))
        .filter(|(t, _)| t.as_second() >= recent)
        .max_by_key(|(t, _)| *t)
        .map(|(_, e)| e.message.clone().unwrap_or_default())
}

/// Cancels the drains of brokers that stay. Returns the ids still to cancel (admin API not
/// reachable) and why. A broker whose pod is gone or that the cluster does not know has no
/// drain left to cancel.
async fn cancel_drains(
    ctx: &Context,
    cluster: &Cluster,
    v: &ValidCluster,
    observed: &[Observed],
    ids: &BTreeSet<i32>,
) -> (Vec<i32>, String) {
    let mut pending = Vec::new();
    let mut problems = Vec::new();
    let mut cancelled = Vec::new();
    for &id in ids {
        let pod = observed.iter().find_map(|o| {
            let base = o.id_base.unwrap_or(0);
            let ordinal = id - base;
            ((0..BROKER_ID_STRIDE).contains(&ordinal) && ordinal < o.replicas).then(|| format!("{}-{ordinal}", o.name))
        });
        let Some(pod) = pod else { continue };
        let endpoint = ctx.admin_endpoint(broker_endpoint(
            &pod,
            &v.headless_service_name(),
            &v.namespace,
            v.ports.admin,
        ));
        match ctx.admin.cancel_drain(&endpoint, id).await {
            Ok(_) => cancelled.push(id),
            Err(AdminError::Status(s)) if s.code() == tonic::Code::NotFound => cancelled.push(id),
            Err(e) => {
                pending.push(id);
                problems.push(format!("broker {id}: {}", e.message()));
            }
        }
    }
    if !cancelled.is_empty() {
        ctx.event(
            cluster,
            false,
            "DrainCancelled",
            "Drain",
            format!("brokers {cancelled:?} stay: their drain was cancelled"),
        )
        .await;
    }
    let message = if problems.is_empty() {
        String::new()
    } else {
        format!("cancelling the drain of brokers that stay: {}", problems.join("; "))
    };
    (pending, message)
}

// Each argument is one observed input of the status; a struct just for this call adds nothing.
#[allow(clippy::too_many_arguments)]
fn status(
    v: &ValidCluster,
    previous: &ClusterStatus,
    generation: Option<i64>,
    applied: &[(RackPlan, StatefulSet)],
    orphans: &[Observed],
    drain: Option<DrainStatus>,
    hash: String,
    pod_failures: &[String],
) -> ClusterStatus {
    let mut racks = Vec::new();
    let (mut brokers, mut ready, mut updated, mut updated_all) = (0, 0, 0, true);
    for (plan, sts) in applied {
        let replicas = sts.spec.replicas.unwrap_or(0);
        let st = sts.status.as_ref();
        let rack_ready = st.and_then(|s| s.ready_replicas).unwrap_or(0);
        let rack_updated = st.and_then(|s| s.updated_replicas).unwrap_or(0);
        if rack_updated < replicas {
            updated_all = false;
        }
        updated += rack_updated.min(replicas);
        brokers += replicas;
        ready += rack_ready;
        racks.push(RackStatus {
            name: plan.name.clone(),
            stateful_set: sts.name_any(),
            brokers: replicas,
            ready_brokers: rack_ready,
            broker_ids: plan.broker_ids(replicas),
        });
    }
    for o in orphans {
        brokers += o.replicas;
        ready += o.ready;
    }
    let c = &previous.conditions;
    let desired = v.brokers;
    let draining = drain
        .as_ref()
        .filter(|d| d.state == "InProgress" || d.state == "Blocked");
    let conditions = match draining {
        Some(d) => vec![
            condition(
                c,
                READY,
                false,
                "Draining",
                format!("waiting for brokers {:?} to drain: {}", d.broker_ids, d.message),
                generation,
            ),
            condition(c, PROGRESSING, true, "Draining", d.message.clone(), generation),
            if d.state == "Blocked" {
                condition(c, DEGRADED, true, "DrainBlocked", d.message.clone(), generation)
            } else {
                condition(c, DEGRADED, false, "AsExpected", "", generation)
            },
        ],
        None if ready >= desired && brokers == desired && updated_all => vec![
            condition(
                c,
                READY,
                true,
                "AllBrokersReady",
                format!("{ready}/{desired} brokers ready"),
                generation,
            ),
            condition(c, PROGRESSING, false, "Stable", "", generation),
            condition(c, DEGRADED, false, "AsExpected", "", generation),
        ],
        None => {
            // Every broker ready but not all on the current spec is a rolling update, not
            // "not ready": say which.
            let rolling = !updated_all && ready > 0;
            let (reason, message) = if !rolling {
                ("BrokersNotReady", format!("{ready}/{desired} brokers ready"))
            } else {
                (
                    "RollingUpdate",
                    format!("rolling update: {updated}/{brokers} brokers updated, {ready}/{desired} ready"),
                )
            };
            vec![
                condition(c, READY, false, reason, message.clone(), generation),
                condition(
                    c,
                    PROGRESSING,
                    true,
                    if rolling { "RollingUpdate" } else { "BrokersStarting" },
                    message,
                    generation,
                ),
                condition(c, DEGRADED, false, "AsExpected", "", generation),
            ]
        }
    };
    // Pods a StatefulSet cannot create (a Pod Security level, a quota, a missing ServiceAccount)
    // are only visible as its FailedCreate events: surface them.
    let conditions = if pod_failures.is_empty() {
        conditions
    } else {
        let message = pod_failures.join("; ");
        conditions
            .into_iter()
            .map(|cond| match cond.type_.as_str() {
                READY => condition(c, READY, false, "PodCreationFailed", message.clone(), generation),
                DEGRADED => condition(c, DEGRADED, true, "PodCreationFailed", message.clone(), generation),
                _ => cond,
            })
            .collect()
    };
    ClusterStatus {
        observed_generation: generation,
        conditions,
        brokers,
        ready_brokers: ready,
        label_selector: Some(build::selector_string(&v.name)),
        racks,
        drain: drain.filter(|d| d.state != "Done"),
        config_hash: Some(hash),
    }
}

/// Server-side apply of one object, forcing ownership of the fields the operator manages.
pub(crate) async fn apply<K>(ctx: &Context, namespace: &str, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
        .await?)
}

async fn patch_status(api: &Api<Cluster>, name: &str, status: &ClusterStatus) -> Result<()> {
    // Server-side apply of the whole status: fields the operator no longer sets are removed.
    let body = serde_json::json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster", "status": status});
    api.patch_status(
        name,
        &PatchParams::apply(crate::cluster::build::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

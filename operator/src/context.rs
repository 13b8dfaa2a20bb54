//! What every reconcile gets: the Kubernetes client, the admin API, the event recorder and
//! metrics, plus timing knobs.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::admin::AdminApi;
use crate::metrics::Metrics;

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub admin: Arc<dyn AdminApi>,
    /// Publishes events without a note of their own (see [`Context::publish`] for the rest).
    pub recorder: Recorder,
    /// One recorder per distinct note: kube's `Recorder` counts an event with the same object,
    /// reason and action as a repeat of the first (an `EventSeries`) and keeps the first note, so
    /// "rack zone-b scaled" would show as another "rack zone-a scaled". Keyed by note, a repeat is
    /// only the very same message.
    recorders: std::sync::Mutex<std::collections::HashMap<String, Recorder>>,
    reporter: Reporter,
    pub metrics: Arc<Metrics>,
    /// How often a converged Topic is re-checked for drift.
    pub topic_resync: Duration,
    /// How often a converged Cluster is re-checked.
    pub cluster_resync: Duration,
    /// How soon to look again while something is in progress (rollout, drain, unreachable brokers).
    pub progress_requeue: Duration,
    /// Send every admin call here instead of the in-cluster Service/pod DNS names (running the
    /// operator outside the cluster against a port-forwarded broker; tests).
    pub admin_endpoint_override: Option<String>,
}

impl Context {
    pub fn new(client: Client, admin: Arc<dyn AdminApi>, metrics: Arc<Metrics>, instance: Option<String>) -> Context {
        let reporter = Reporter {
            controller: "fjord-operator".into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            recorders: std::sync::Mutex::default(),
            reporter,
            client,
            admin,
            metrics,
            topic_resync: Duration::from_secs(60),
            cluster_resync: Duration::from_secs(300),
            progress_requeue: Duration::from_secs(10),
            admin_endpoint_override: None,
        }
    }

    /// The admin endpoint to use for an in-cluster one.
    pub fn admin_endpoint(&self, in_cluster: String) -> String {
        self.admin_endpoint_override.clone().unwrap_or(in_cluster)
    }

    /// Publishes a Kubernetes event about `obj`; a failure is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }

    /// Publishes an event through the recorder of its note, so events that differ in their note
    /// are never merged into one series.
    pub async fn publish(
        &self,
        event: &Event,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) -> Result<(), kube::Error> {
        let recorder = {
            let mut recorders = self.recorders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Bounded: a forgotten recorder only means a repeat starts a new series.
            if recorders.len() >= 1024 {
                recorders.clear();
            }
            recorders
                .entry(event.note.clone().unwrap_or_default())
                .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()))
                .clone()
        };
        recorder.publish(event, reference).await
    }
}

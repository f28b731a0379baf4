//! The metrics a library user's recorder sees (feature `metrics`): a term won and lost on the
//! memory backend, through the same supervisor functions `elect run` uses.

use std::time::Duration;

use elect_core::{
    campaign_logged, log_state, Candidate, ElectionName, LeadershipState, LossReason, MemoryStore,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

#[tokio::test(flavor = "current_thread")]
async fn terms_losses_leader_token_campaign_wait_and_renewals_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let store = MemoryStore::new();
    let ttl = Duration::from_millis(300);
    let elector = store.elector(ttl, ttl / 10);
    let election: ElectionName = "billing".parse().unwrap();
    let leadership = campaign_logged(&elector, &election, &Candidate::new("a", "a").unwrap())
        .await
        .unwrap();
    // Two renewals answered (every TTL/3).
    tokio::time::sleep(ttl).await;
    log_state(
        &leadership,
        Some(LeadershipState::Leading),
        LeadershipState::Lost(LossReason::Revoked),
    );

    let mut seen = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        seen.insert(name, (kind, value));
    }
    let get = |name: &str| {
        seen.get(name)
            .unwrap_or_else(|| panic!("{name} in {seen:#?}"))
    };
    assert_eq!(
        get("elect_terms_total{election=billing}"),
        &(MetricKind::Counter, DebugValue::Counter(1))
    );
    assert_eq!(
        get("elect_losses_total{election=billing,reason=revoked}"),
        &(MetricKind::Counter, DebugValue::Counter(1))
    );
    assert_eq!(
        get("elect_leader{election=billing}").1,
        DebugValue::Gauge(0.0.into())
    );
    assert_eq!(
        get("elect_fencing_token{election=billing}").1,
        DebugValue::Gauge((leadership.token().get() as f64).into())
    );
    match &get("elect_campaign_wait_seconds{election=billing}").1 {
        DebugValue::Histogram(waits) => assert_eq!(waits.len(), 1),
        other => panic!("a histogram, not {other:?}"),
    }
    match &get("elect_renewal_rtt_seconds{backend=memory}").1 {
        DebugValue::Histogram(trips) => assert!(trips.len() >= 2, "{trips:?}"),
        other => panic!("a histogram, not {other:?}"),
    }
}

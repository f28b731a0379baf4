//! The physical floor of a handover, measured in the same run: one client deletes a key, and
//! the time until another client's watch on it delivers the event — one delete committed by
//! the cluster plus one watch event delivered. No election recipe can hand over faster.
//!
//! Each delete comes after the same quiet time as a handover's resign ([`settle`]): the
//! members take about a millisecond longer to commit and notify after 100 ms with nothing to
//! do (etcd, 2026-12-05: 2.44–2.59 ms against 1.37–1.42 back to back), and a handover always
//! comes after such a pause.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{EventType, WatchOptions};
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::cluster::{consul_agent, fresh, settle, Backend};
use crate::http::http;

const WITHIN: Duration = Duration::from_secs(10);

/// `rounds` floor samples (milliseconds) on `backend`, after one warm-up round.
pub async fn measure(backend: Backend, rounds: usize) -> Result<Vec<f64>> {
    match backend {
        Backend::Etcd => etcd(rounds).await,
        Backend::Zookeeper => zookeeper(rounds).await,
        Backend::Consul => consul(rounds).await,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// etcd: `put`, a watch from the next revision on a second client (its creation confirmed),
/// then `delete` on the first; until the watch yields the delete event.
async fn etcd(rounds: usize) -> Result<Vec<f64>> {
    let endpoints = Backend::Etcd.members();
    let mut deleter = etcd_client::Client::connect(endpoints.clone(), None)
        .await
        .context("connect to etcd")?;
    let mut watcher = etcd_client::Client::connect(endpoints, None)
        .await
        .context("connect to etcd")?;
    let key = format!("{}/floor", fresh("floor"));
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let put = deleter.put(key.as_str(), "x", None).await?;
        let revision = put.header().map_or(0, |h| h.revision());
        let mut stream = watcher
            .watch(
                key.as_str(),
                Some(WatchOptions::new().with_start_revision(revision + 1)),
            )
            .await?;
        let created = tokio::time::timeout(WITHIN, stream.message())
            .await
            .map_err(|_| anyhow!("etcd: the floor's watch was not created"))??;
        if !created.is_some_and(|m| m.created()) {
            bail!("etcd: the floor's watch answered without being created");
        }
        let deleted = tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(m))
                        if m.events()
                            .iter()
                            .any(|e| e.event_type() == EventType::Delete) =>
                    {
                        return Ok(Instant::now())
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(anyhow!("etcd: the floor's watch ended")),
                    Err(e) => return Err(anyhow!("etcd: the floor's watch: {e}")),
                }
            }
        });
        tokio::time::sleep(settle(Backend::Etcd)).await;
        let t0 = Instant::now();
        deleter.delete(key.as_str(), None).await?;
        let t1 = tokio::time::timeout(WITHIN, deleted)
            .await
            .map_err(|_| anyhow!("etcd: no delete event within {WITHIN:?}"))???;
        if round > 0 {
            samples.push(ms(t1 - t0));
        }
    }
    Ok(samples)
}

/// ZooKeeper: a node, an `exists` watch on it from a second session, then `delete` from the
/// first; until the watch fires.
async fn zookeeper(rounds: usize) -> Result<Vec<f64>> {
    let hosts = Backend::Zookeeper.hosts();
    let connect = || async {
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&hosts)
            .await
            .context("connect to ZooKeeper")
    };
    let deleter = connect().await?;
    let watcher = connect().await?;
    let path = format!("/{}", fresh("floor"));
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let mut samples = Vec::new();
    for round in 0..=rounds {
        deleter.create(&path, b"x", &options).await?;
        // The watcher's member may not have applied the create yet: catch it up first.
        watcher.sync(&path).await?;
        let (stat, watch) = watcher.check_and_watch_stat(&path).await?;
        if stat.is_none() {
            bail!("zookeeper: the floor's node is not visible to the watcher");
        }
        let fired = tokio::spawn(async move {
            watch.changed().await;
            Instant::now()
        });
        tokio::time::sleep(settle(Backend::Zookeeper)).await;
        let t0 = Instant::now();
        deleter.delete(&path, None).await?;
        let t1 = tokio::time::timeout(WITHIN, fired)
            .await
            .map_err(|_| anyhow!("zookeeper: no watch event within {WITHIN:?}"))??;
        if round > 0 {
            samples.push(ms(t1 - t0));
        }
    }
    Ok(samples)
}

/// Consul: a key, a blocking query on it at its index (given 100 ms to reach the agent: no
/// event says it is parked), then `DELETE`; until the query returns.
async fn consul(rounds: usize) -> Result<Vec<f64>> {
    let agent = consul_agent().await?;
    let key = format!("/v1/kv/{}", fresh("floor"));
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let (status, _) = http(&agent, "PUT", &key, "x", WITHIN).await?;
        if status != 200 {
            bail!("consul: PUT {key}: status {status}");
        }
        let (status, body) = http(&agent, "GET", &key, "", WITHIN).await?;
        let index = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v[0]["ModifyIndex"].as_u64())
            .ok_or_else(|| anyhow!("consul: GET {key}: status {status}: {body}"))?;
        let blocking = {
            let (agent, path) = (agent.clone(), format!("{key}?index={index}&wait=10s"));
            tokio::spawn(async move {
                let answer = http(&agent, "GET", &path, "", Duration::from_secs(15)).await;
                (Instant::now(), answer)
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        if blocking.is_finished() {
            bail!("consul: the blocking query returned before the delete");
        }
        tokio::time::sleep(settle(Backend::Consul)).await;
        let t0 = Instant::now();
        http(&agent, "DELETE", &key, "", WITHIN).await?;
        let (t1, answer) = tokio::time::timeout(WITHIN, blocking)
            .await
            .map_err(|_| anyhow!("consul: the blocking query did not return"))??;
        answer?;
        if round > 0 {
            samples.push(ms(t1 - t0));
        }
    }
    Ok(samples)
}

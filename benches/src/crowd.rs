//! A leader and waiting candidates, what herd, scale and idle measure around (the server
//! work, the memory, the idle traffic of the waiters): ours in this process, one elector
//! each ([`Crowd`]), or the peer tool's processes ([`PeerCrowd`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use elect::{Candidate, ElectionName, Elector, Leadership};
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::cluster::{consul_live_agents, wait_candidates, Backend};
use crate::peers::{Proc, Tool};
use crate::Ctx;

/// `electors[0]` leading `election`; after [`Crowd::join`], every other elector waiting.
pub struct Crowd {
    /// The election.
    pub election: ElectionName,
    /// The leader's elector first, then the waiters'.
    pub electors: Vec<Arc<dyn Elector>>,
    /// The leader's term.
    pub leader: Leadership,
    waiting: Vec<JoinHandle<()>>,
}

impl Crowd {
    /// `electors[0]` campaigns as `leader` and leads.
    pub async fn lead(election: ElectionName, electors: Vec<Arc<dyn Elector>>) -> Result<Crowd> {
        let leader = electors[0]
            .campaign(&election, &Candidate::new("leader", "leader")?)
            .await?;
        Ok(Crowd {
            election,
            electors,
            leader,
            waiting: Vec::new(),
        })
    }

    /// Every other elector campaigns as `w<i>`, each in a task of its own; a term won is
    /// handed to `won`. Returns at once: see [`Crowd::wait_joined`].
    pub fn join<F>(&mut self, won: F)
    where
        F: Fn(Leadership) + Clone + Send + 'static,
    {
        for (i, elector) in self.electors[1..].iter().enumerate() {
            let (elector, name, won) = (elector.clone(), self.election.clone(), won.clone());
            self.waiting.push(tokio::spawn(async move {
                let candidate = Candidate::new(format!("w{i}"), "w").expect("a valid candidate");
                if let Ok(term) = elector.campaign(&name, &candidate).await {
                    won(term);
                }
            }));
        }
    }

    /// Waits until the store shows the leader and every waiter, up to `within`.
    pub async fn wait_joined(&self, backend: Backend, within: Duration) -> Result<()> {
        let count = self.electors.len();
        wait_candidates(&*self.electors[0], backend, &self.election, count, within).await
    }

    /// Stops the waiting campaigns, resigns the leader (a no-op if it has already) and closes
    /// every elector, 32 at a time.
    pub async fn end(self) {
        for task in &self.waiting {
            task.abort();
        }
        let _ = self.leader.resign().await;
        futures::stream::iter(self.electors.iter())
            .for_each_concurrent(32, |e| async move {
                let _ = e.close().await;
            })
            .await;
    }
}

/// The peer tool's candidates in one election, each its own process, dealt over the live
/// Consul agents in turn: an agent takes a limited number of connections per client address
/// (200 by default, 4,096 in the test clusters).
pub struct PeerCrowd<'a> {
    ctx: &'a Ctx,
    tool: &'a Tool,
    election: &'a ElectionName,
    agents: Vec<String>,
}

impl<'a> PeerCrowd<'a> {
    /// Finds the live Consul agents.
    pub async fn new(ctx: &'a Ctx, tool: &'a Tool, election: &'a ElectionName) -> PeerCrowd<'a> {
        PeerCrowd {
            ctx,
            tool,
            election,
            agents: consul_live_agents().await,
        }
    }

    /// Candidate `i`'s process (0 first: it leads).
    pub fn spawn(&self, i: usize) -> Result<Proc> {
        let agent = (!self.agents.is_empty()).then(|| self.agents[i % self.agents.len()].as_str());
        Proc::spawn_with(
            self.tool,
            self.election,
            &self.ctx.dir,
            &self.ctx.bins,
            agent,
        )
    }
}

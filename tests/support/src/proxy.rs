//! A TCP proxy in front of each cluster member, one set per candidate, so that tests can cut
//! one candidate off from the cluster or slow its network without root, network namespaces
//! or `tc`.
//!
//! A cut is silent, like a pulled cable: connections stay open, bytes stop moving in both
//! directions (they wait in the proxy and the kernel's buffers), and new connections are
//! accepted but carry nothing. Healing lets the held bytes through, late, as TCP would. A
//! link that is down instead closes every connection and every new one at once, as a server
//! that went away: requests fail fast, and nothing sent meanwhile arrives later.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clusters::TestConfig;

/// What the network between a candidate and the cluster does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes pass at once.
    Up,
    /// Each chunk of bytes is held this long, each way.
    Slow(Duration),
    /// Nothing passes; bytes are held until the link is up again.
    Cut,
    /// Every connection is closed, new ones at once; nothing is held.
    Down,
}

/// Proxies from local ports to each of `upstreams`, each with its own [`Link`] setting,
/// counting the bytes each carries (which member a client really talks to) and logging the
/// HTTP requests that pass (for HTTP stores: what a client asked, and when).
#[derive(Debug)]
pub struct Proxy {
    links: Vec<watch::Sender<Link>>,
    carried: Vec<Arc<AtomicU64>>,
    requests: Requests,
    addresses: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// The request lines (`GET /v1/kv/…`) of the HTTP requests a proxy carried, in order.
type Requests = Arc<std::sync::Mutex<Vec<String>>>;

impl Proxy {
    /// Listens on a free loopback port for each upstream.
    pub async fn start(upstreams: &[SocketAddr]) -> std::io::Result<Proxy> {
        let mut proxy = Proxy {
            links: Vec::new(),
            carried: Vec::new(),
            requests: Requests::default(),
            addresses: Vec::new(),
            tasks: Vec::new(),
        };
        for &upstream in upstreams {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            proxy.addresses.push(listener.local_addr()?);
            let (link, watching) = watch::channel(Link::Up);
            let carried = Arc::new(AtomicU64::new(0));
            proxy.tasks.push(tokio::spawn(accept(
                listener,
                upstream,
                watching,
                carried.clone(),
                proxy.requests.clone(),
            )));
            proxy.links.push(link);
            proxy.carried.push(carried);
        }
        Ok(proxy)
    }

    /// Proxies in front of a comma-separated list of `host:port` upstreams, as the test
    /// clusters' variables give them (`ELECT_TEST_ETCD_ENDPOINTS`, …).
    pub async fn in_front_of(upstreams: &str) -> std::io::Result<Proxy> {
        let mut resolved = Vec::new();
        for upstream in upstreams.split(',') {
            let address = tokio::net::lookup_host(upstream)
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("{upstream} resolves to nothing")))?;
            resolved.push(address);
        }
        Proxy::start(&resolved).await
    }

    /// The local addresses, comma-separated, to give a client instead of the upstreams.
    pub fn list(&self) -> String {
        let addresses: Vec<String> = self.addresses.iter().map(|a| a.to_string()).collect();
        addresses.join(",")
    }

    /// The local addresses, in the order of the upstreams.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Sets what every link does from now on, for open and new connections alike.
    pub fn set(&self, link: Link) {
        for each in &self.links {
            each.send_replace(link);
        }
    }

    /// Sets what the link to upstream `index` (in the order given) does from now on.
    pub fn set_one(&self, index: usize, link: Link) {
        self.links[index].send_replace(link);
    }

    /// The request lines of the HTTP requests carried so far to any upstream, in order: a
    /// chunk a client sent that opens with an HTTP method is a request (clients send each
    /// request's head in one write).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests poisoned").clone()
    }

    /// Bytes carried so far to and from each upstream, in the order given.
    pub fn carried(&self) -> Vec<u64> {
        self.carried
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    link: watch::Receiver<Link>,
    carried: Arc<AtomicU64>,
    requests: Requests,
) {
    // Connections end with the listener's task: they are its children.
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        if *link.borrow() == Link::Down {
            continue; // dropped: closed at once
        }
        let (link, carried, requests) = (link.clone(), carried.clone(), requests.clone());
        connections.spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let mut down = link.clone();
            tokio::select! {
                _ = pump(client_read, server_write, link.clone(), carried.clone(), Some(requests)) => {}
                _ = pump(server_read, client_write, link, carried, None) => {}
                _ = down.wait_for(|l| *l == Link::Down) => {}
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Moves bytes from `from` to `to` as the link allows: a slow link delays each chunk by its
/// delay from when it was read (a pipeline, not a queue that adds the delays up). Logs the
/// request line of each chunk that opens an HTTP request into `requests`, if given.
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    link: watch::Receiver<Link>,
    carried: Arc<AtomicU64>,
    requests: Option<Requests>,
) {
    let (chunks, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let mut reading = link.clone();
    let read = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            // While cut, nothing is read either: the sender's buffers fill as on a dead link.
            if reading.wait_for(|l| *l != Link::Cut).await.is_err() {
                return;
            }
            let n = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            carried.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(requests) = &requests {
                let chunk = &buffer[..n];
                if [&b"GET "[..], b"PUT ", b"POST ", b"DELETE "]
                    .iter()
                    .any(|method| chunk.starts_with(method))
                {
                    let line = chunk.split(|&b| b == b'\r').next().unwrap_or_default();
                    let line = String::from_utf8_lossy(line).into_owned();
                    requests.lock().expect("requests poisoned").push(line);
                }
            }
            let due = match *reading.borrow() {
                Link::Slow(delay) => tokio::time::Instant::now() + delay,
                _ => tokio::time::Instant::now(),
            };
            if chunks.send((due, buffer[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let mut writing = link;
    let write = async move {
        while let Some((due, chunk)) = arrivals.recv().await {
            tokio::time::sleep_until(due).await;
            if writing.wait_for(|l| *l != Link::Cut).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The reader's end lets the writer drain what it holds; the writer's end (peer gone)
    // stops the reader at its next chunk.
    tokio::join!(read, write);
}

/// Makes electors of `C`'s cluster whose links go through a [`Proxy`] that the conformance
/// suite's cut-off cases take down ([`Harness::with_cut_off`]): `connect` makes the elector
/// from the test configuration aimed at the proxy.
///
/// [`Harness::with_cut_off`]: elect_core::testkit::Harness::with_cut_off
pub fn cut_off_connector<C, F, Fut, E>(connect: F) -> elect_core::testkit::ConnectCutOff
where
    C: TestConfig + Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = elect_core::Result<E>> + Send + 'static,
    E: elect_core::Elector + 'static,
{
    let connect = Arc::new(connect);
    Arc::new(move || {
        let connect = connect.clone();
        Box::pin(async move {
            let proxy = Proxy::in_front_of(&C::CLUSTER.addresses())
                .await
                .expect("a proxy in front of the cluster");
            let elector = connect(C::aimed_at(&proxy.list())).await?;
            Ok(elect_core::testkit::CutOff {
                elector: Arc::new(elector),
                set_down: Box::new(move |down| proxy.set(if down { Link::Down } else { Link::Up })),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream) -> Option<Duration> {
        let started = tokio::time::Instant::now();
        stream.write_all(b"ping").await.unwrap();
        let mut reply = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut reply))
            .await
            .ok()?
            .unwrap();
        assert_eq!(&reply, b"ping");
        Some(started.elapsed())
    }

    #[tokio::test]
    async fn a_cut_link_carries_nothing_until_healed_and_a_slow_one_is_late() {
        let proxy = Proxy::start(&[echo_server().await]).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addresses()[0]).await.unwrap();
        assert!(round_trip(&mut stream).await.unwrap() < Duration::from_millis(100));

        proxy.set(Link::Cut);
        assert_eq!(
            round_trip(&mut stream).await,
            None,
            "bytes crossed a cut link"
        );
        let mut fresh = TcpStream::connect(proxy.addresses()[0]).await.unwrap();
        assert_eq!(
            round_trip(&mut fresh).await,
            None,
            "a new connection crossed a cut link"
        );

        proxy.set(Link::Up);
        // The ping held during the cut arrives now, then the next one.
        let mut held = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut held))
            .await
            .expect("held bytes delivered after healing")
            .unwrap();
        assert!(round_trip(&mut stream).await.is_some());

        proxy.set(Link::Slow(Duration::from_millis(100)));
        let took = round_trip(&mut stream).await.unwrap();
        assert!(
            took >= Duration::from_millis(200),
            "slow link took {took:?}"
        );

        proxy.set(Link::Down);
        let mut closed = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut closed)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "an open connection survived a link going down: {read:?}"
        );
        let mut fresh = TcpStream::connect(proxy.addresses()[0]).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(1), fresh.read(&mut closed)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a new connection was carried while the link is down: {read:?}"
        );
        proxy.set(Link::Up);
        let mut fresh = TcpStream::connect(proxy.addresses()[0]).await.unwrap();
        assert!(
            round_trip(&mut fresh).await.is_some(),
            "no traffic after the link came back"
        );
        assert!(proxy.carried()[0] >= 8, "bytes: {:?}", proxy.carried());
    }
}

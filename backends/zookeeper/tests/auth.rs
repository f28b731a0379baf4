//! Digest authentication and ACLs: with credentials, claims are created so that only the same
//! identity may change or delete them; other identities, and anonymous clients, may read.

mod support;

use elect_core::config::ZookeeperConfig;
use elect_core::testkit::{campaign_as, spawn_campaign_as, Won};
use elect_core::{ElectionName, Elector};
use elect_test_support::clusters::{TestCluster, TestConfig};
use elect_zookeeper::ZookeeperElector;
use zookeeper_client as zk;

#[tokio::test]
async fn claims_of_an_identity_cannot_be_deleted_by_another() {
    let election: ElectionName = elect_test_support::unique_name("acl").parse().unwrap();
    let mut secured = ZookeeperConfig::for_tests();
    secured.auth = Some("billing:s3cret".into());
    let elector = ZookeeperElector::connect(&secured).await.unwrap();
    let debug = format!("{elector:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    let leadership = campaign_as(&elector, &election, "a").await;

    let claims = elector.candidates(&election).await.unwrap();
    assert_eq!(claims.len(), 1);
    let dir = format!("/{election}");
    let anonymous = zk::Client::connect(&TestCluster::Zookeeper.addresses())
        .await
        .unwrap();
    let children = anonymous
        .list_children(&dir)
        .await
        .expect("anyone may read the election");
    let claim = format!("{dir}/{}", children[0]);
    let intruder = zk::Client::connector()
        .with_auth("digest", b"mallory:other")
        .connect(&TestCluster::Zookeeper.addresses())
        .await
        .unwrap();
    for (who, client) in [("anonymous", &anonymous), ("another identity", &intruder)] {
        let deleted = client.delete(&claim, None).await;
        assert_eq!(deleted, Err(zk::Error::NoAuth), "{who} deleted the claim");
    }
    assert!(leadership.is_leader());

    // The same identity (another replica of the same service) may join and take over.
    let replica = ZookeeperElector::connect(&secured).await.unwrap();
    let waiting = spawn_campaign_as(replica, &election, "b");
    leadership.resign().await.unwrap();
    let Won {
        leadership: next,
        elector: _replica,
        ..
    } = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(next.token() > leadership.token());
    next.resign().await.unwrap();
}

/// An observer that may not read the election hears "permission denied", not "unreachable":
/// the observer loop reports an error with its own kind (it used to turn every error into
/// `Unavailable`).
#[tokio::test]
async fn an_observer_denied_the_election_reports_permission_denied() {
    use futures::StreamExt;
    let election: ElectionName = elect_test_support::unique_name("denied").parse().unwrap();
    let dir = format!("/{election}");
    let owner = zk::Client::connector()
        .with_auth("digest", b"billing:s3cret")
        .connect(&TestCluster::Zookeeper.addresses())
        .await
        .unwrap();
    owner
        .create(
            &dir,
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
        )
        .await
        .unwrap();
    let anonymous = ZookeeperElector::connect(&ZookeeperConfig::for_tests())
        .await
        .unwrap();
    let mut leaders = anonymous.observe(&election).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), leaders.next())
        .await
        .expect("the observer reports within 5 s")
        .expect("an item");
    assert!(
        matches!(first, Err(elect_core::Error::PermissionDenied { .. })),
        "{first:?}"
    );
    owner.delete(&dir, None).await.unwrap();
}

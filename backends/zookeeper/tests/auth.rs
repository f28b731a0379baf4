//! Digest authentication and ACLs: with credentials, claims are created so that only the same
//! identity may change or delete them; other identities, and anonymous clients, may read.

mod support;

use elect_core::{Candidate, ElectionName, Elector};
use elect_zookeeper::ZookeeperElector;
use support::{config, connect_string};
use zookeeper_client as zk;

#[tokio::test]
async fn claims_of_an_identity_cannot_be_deleted_by_another() {
    let election: ElectionName = elect_test_support::unique_name("acl").parse().unwrap();
    let mut secured = config();
    secured.auth = Some("billing:s3cret".into());
    let elector = ZookeeperElector::connect(&secured).await.unwrap();
    let debug = format!("{elector:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    let leadership = elector
        .campaign(&election, &Candidate::new("a", "a").unwrap())
        .await
        .unwrap();

    let claims = elector.candidates(&election).await.unwrap();
    assert_eq!(claims.len(), 1);
    let dir = format!("/{election}");
    let anonymous = zk::Client::connect(&connect_string()).await.unwrap();
    let children = anonymous
        .list_children(&dir)
        .await
        .expect("anyone may read the election");
    let claim = format!("{dir}/{}", children[0]);
    let intruder = zk::Client::connector()
        .with_auth("digest", b"mallory:other")
        .connect(&connect_string())
        .await
        .unwrap();
    for (who, client) in [("anonymous", &anonymous), ("another identity", &intruder)] {
        let deleted = client.delete(&claim, None).await;
        assert_eq!(deleted, Err(zk::Error::NoAuth), "{who} deleted the claim");
    }
    assert!(leadership.is_leader());

    // The same identity (another replica of the same service) may join and take over.
    let replica = ZookeeperElector::connect(&secured).await.unwrap();
    let waiting = {
        let election = election.clone();
        tokio::spawn(async move {
            replica
                .campaign(&election, &Candidate::new("b", "b").unwrap())
                .await
                .map(|l| (l, replica))
        })
    };
    leadership.resign().await.unwrap();
    let (next, _replica) = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.token() > leadership.token());
    next.resign().await.unwrap();
}

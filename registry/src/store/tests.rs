//! The store's rules, on an in-memory database: numbering, governance,
//! compare-and-swap, and the audit trail each write leaves.

use sluice_registry_client::types::*;

use super::*;
use crate::policy::Policy;

fn artifact(byte: u8) -> Artifact {
    Artifact {
        sha256: sluice_common::secrets::hex(&[byte; 32]),
        size: 10,
        signature: Signature::default(),
    }
}

fn registered(store: &Store, metrics: &[(&str, f64)]) -> Version {
    store
        .write(|tx| {
            if models::find(tx, "m")?.is_none() {
                models::create(
                    tx,
                    "alice",
                    &CreateModel {
                        name: "m".into(),
                        ..Default::default()
                    },
                )?;
            }
            let next = models::get(tx, "m")?.latest_version.unwrap_or(0) as u8 + 1;
            let artifact = artifact(next);
            versions::record_artifact(tx, "alice", &artifact)?;
            let lineage = Lineage {
                metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                ..Default::default()
            };
            versions::create(tx, "alice", "m", &artifact.sha256, &lineage, None)
        })
        .unwrap()
}

fn promote(store: &Store, policy: &Policy, version: u64, to_stage: Stage) -> Transition {
    store
        .write(|tx| {
            let found = versions::get(tx, "m", version)?;
            let body = RequestTransition {
                to_stage,
                comment: String::new(),
            };
            governance::request(tx, policy, "alice", &found, &body)
        })
        .unwrap()
}

fn approve(store: &Store, policy: &Policy, actor: &str, id: u64, kind: &str) -> Result<Transition> {
    let body = ReviewTransition {
        approval: Some(kind.into()),
        comment: "ok".into(),
    };
    store.write(|tx| governance::review(tx, policy, actor, id, Decision::Approve, &body))
}

fn deploy(
    store: &Store,
    policy: &Policy,
    targets: &[(u64, u32)],
    if_revision: Option<u64>,
) -> Result<Deployment> {
    let mut body = SetDeployment::new(TrafficSpec::weighted(targets));
    body.if_revision = if_revision;
    store.write(|tx| deployments::set(tx, policy, "dora", "m", &body))
}

#[test]
fn versions_are_numbered_per_model_and_need_their_artifact() {
    let store = in_memory();
    assert_eq!(registered(&store, &[]).version, 1);
    assert_eq!(registered(&store, &[]).version, 2);
    let missing =
        store.write(|tx| versions::create(tx, "a", "m", &"0".repeat(64), &Lineage::default(), None));
    assert!(matches!(missing, Err(Error::NotFound(_))));
    assert_eq!(store.read(|c| versions::list(c, "m")).unwrap().len(), 2);
}

#[test]
fn production_needs_two_approvers_and_its_gates() {
    let store = in_memory();
    let policy: Policy = toml::from_str(
        "[stages.production]\napprovals = [\"technical\", \"business\"]\ngates = [\"auc >= 0.85\"]",
    )
    .unwrap();
    let weak = registered(&store, &[("auc", 0.8)]);
    let refused = store.write(|tx| {
        let body = RequestTransition {
            to_stage: Stage::Production,
            comment: String::new(),
        };
        governance::request(tx, &policy, "alice", &weak, &body)
    });
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("gate 'auc >= 0.85' fails: auc is 0.8"),
        "{message}"
    );

    let good = registered(&store, &[("auc", 0.9)]);
    let pending = promote(&store, &policy, good.version, Stage::Production);
    assert_eq!(pending.status, TransitionStatus::Pending);
    assert_eq!(pending.missing_approvals, vec!["technical", "business"]);
    let own = approve(&store, &policy, "alice", pending.id, "technical").unwrap_err();
    assert!(
        matches!(own, Error::Forbidden(_)),
        "the requester may not approve: {own}"
    );
    let half = approve(&store, &policy, "tom", pending.id, "technical").unwrap();
    assert_eq!(half.missing_approvals, vec!["business"]);
    let twice = approve(&store, &policy, "tom", pending.id, "business").unwrap_err();
    assert!(twice.to_string().contains("already reviewed"), "{twice}");
    let wrong = approve(&store, &policy, "bea", pending.id, "legal").unwrap_err();
    assert!(
        wrong.to_string().contains("expected one of technical, business"),
        "{wrong}"
    );
    let done = approve(&store, &policy, "bea", pending.id, "business").unwrap();
    assert_eq!(done.status, TransitionStatus::Applied);
    let stage = store.read(|c| versions::get(c, "m", good.version)).unwrap().stage;
    assert_eq!(stage, Stage::Production);
}

#[test]
fn deployments_compare_and_swap_and_guard_stages() {
    let store = in_memory();
    let policy = Policy::default();
    let version = registered(&store, &[]);
    let refused = deploy(&store, &policy, &[(1, 100)], None).unwrap_err();
    assert!(matches!(refused, Error::Refused(_)), "{refused}");
    let transition = promote(&store, &policy, version.version, Stage::Staging);
    approve(&store, &policy, "tom", transition.id, "technical").unwrap();

    let unapproved = registered(&store, &[]);
    let idle = deploy(&store, &policy, &[(1, 0), (unapproved.version, 0)], None).unwrap_err();
    assert!(
        matches!(idle, Error::Refused(_)),
        "weight 0 too must be deployable: {idle}"
    );
    let first = deploy(&store, &policy, &[(1, 100)], Some(0)).unwrap();
    assert_eq!(first.revision, 1);
    let stale = deploy(&store, &policy, &[(1, 100)], Some(0)).unwrap_err();
    assert!(matches!(stale, Error::Conflict(_)), "{stale}");
    let bad_sum = deploy(&store, &policy, &[(1, 90)], None).unwrap_err();
    assert!(bad_sum.to_string().contains("expected 100"), "{bad_sum}");
    let unknown = deploy(&store, &policy, &[(1, 50), (7, 50)], None).unwrap_err();
    assert!(matches!(unknown, Error::NotFound(_)), "{unknown}");
    let second = deploy(&store, &policy, &[(1, 100)], Some(1)).unwrap();
    assert_eq!(second.revision, 2);
    assert_eq!(store.read(deployments::revision).unwrap(), 2);

    // A version that takes traffic may not be archived.
    let archive = store.write(|tx| {
        let found = versions::get(tx, "m", 1)?;
        let body = RequestTransition {
            to_stage: Stage::Archived,
            comment: String::new(),
        };
        governance::request(tx, &policy, "alice", &found, &body)
    });
    assert!(matches!(archive, Err(Error::Conflict(_))));
}

#[test]
fn aliases_move_by_compare_and_swap() {
    let store = in_memory();
    registered(&store, &[]);
    registered(&store, &[]);
    let set = |version, if_version| {
        store.write(|tx| aliases::set(tx, "dora", "m", "champion", &SetAlias { version, if_version }))
    };
    assert!(set(1, Some(Some(1))).is_err(), "absent alias is not at version 1");
    set(1, Some(None)).unwrap();
    assert!(set(2, Some(None)).is_err(), "it exists now");
    set(2, Some(Some(1))).unwrap();
    let champion = store.read(|c| versions::resolve(c, "m", "champion")).unwrap();
    assert_eq!(champion.version, 2);
    assert_eq!(champion.aliases, vec!["champion"]);
    assert!(matches!(
        store.read(|c| versions::resolve(c, "m", "nope")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn every_change_is_in_the_audit_log() {
    let store = in_memory();
    registered(&store, &[]);
    let events = store.read(|c| events::list(c, 0, 100)).unwrap();
    let actions: Vec<&str> = events.iter().map(|event| event.action.as_str()).collect();
    assert_eq!(actions, ["model.create", "artifact.store", "version.create"]);
    assert!(events.iter().all(|event| event.actor == "alice"));
    assert_eq!(
        store.read(|c| events::list(c, events[1].id, 100)).unwrap().len(),
        1
    );
}

#[test]
fn the_tokens_file_is_brought_in_at_each_start_and_revocations_hold() {
    use crate::auth::{FileToken, Role};
    let store = in_memory();
    let file_token = |actor: &str, role: Role, byte: u8| FileToken {
        actor: actor.into(),
        role,
        sha256: sluice_common::secrets::hex(&[byte; 32]),
    };
    let root = file_token("root", Role::Admin, 1);
    let ci = file_token("ci", Role::Deployer, 2);
    store
        .write(|tx| tokens::import(tx, &[root.clone(), ci.clone()]))
        .unwrap();
    // The same file again changes nothing.
    let warnings = store
        .write(|tx| tokens::import(tx, &[root.clone(), ci.clone()]))
        .unwrap();
    assert!(warnings.is_empty());
    let listed = store.read(tokens::list).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|token| token.source == tokens::FROM_FILE));

    // A token made live works beside them; the last live admin cannot be revoked.
    let live = |token: &TokenInfo| token.revoked_at.is_none();
    let made = store
        .write(|tx| tokens::create(tx, "root", "dora", Role::Deployer, &"ab".repeat(32), None))
        .unwrap();
    let refusal = store
        .write(|tx| tokens::revoke(tx, "root", listed[0].id, None, live))
        .unwrap_err()
        .to_string();
    assert!(refusal.contains("last live admin token"), "{refusal}");
    store
        .write(|tx| tokens::revoke(tx, "root", made.id, None, live))
        .unwrap();
    let again = store
        .write(|tx| tokens::revoke(tx, "root", made.id, None, live))
        .unwrap_err()
        .to_string();
    assert!(again.contains("already revoked"), "{again}");

    // Revoked through the API, a file token stays revoked at the next start;
    // one the file drops is revoked; one it adds is brought in.
    let ci_id = listed[1].id;
    store
        .write(|tx| tokens::revoke(tx, "root", ci_id, None, live))
        .unwrap();
    let bea = file_token("bea", Role::Admin, 3);
    let warnings = store
        .write(|tx| tokens::import(tx, &[ci.clone(), bea.clone()]))
        .unwrap();
    assert_eq!(warnings, vec![format!("token {ci_id} of ci in the tokens file")]);
    let after = store.read(tokens::list).unwrap();
    let by_actor = |actor: &str| after.iter().find(|token| token.actor == actor).unwrap();
    assert_eq!(by_actor("root").revoked_by.as_deref(), Some("tokens file"));
    assert!(by_actor("ci").revoked_at.is_some());
    assert!(by_actor("bea").revoked_at.is_none());
    let actions: Vec<String> = store
        .read(|c| events::list(c, 0, 100))
        .unwrap()
        .into_iter()
        .filter(|event| event.subject.starts_with("token/"))
        .map(|event| event.action)
        .collect();
    assert_eq!(
        actions,
        [
            "token.import",
            "token.import",
            "token.create",
            "token.revoke",
            "token.revoke",
            "token.import",
            "token.revoke"
        ]
    );
}

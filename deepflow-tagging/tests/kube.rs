//! The Kubernetes client against recorded apiserver responses served on 127.0.0.1.

mod common;

use std::net::IpAddr;

use common::{Resp, TOKEN, TestServer, fixture};
use deepflow_tagging::kube::{KubeClient, KubeConfig, KubeError, KubeSource, KubeSourceConfig, Resource, Step};
use deepflow_tagging::{Endpoint, Inventory, ResourceKind, Tagger, TaggerOptions};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client(srv: &TestServer) -> KubeClient {
    let mut cfg = KubeConfig::new(srv.url()).with_token(TOKEN);
    if srv.tls {
        cfg = cfg.with_ca_pem(std::fs::read(common::fixture_path("tls/ca.crt")).unwrap());
    }
    cfg.watch_timeout = std::time::Duration::from_secs(5);
    KubeClient::new(cfg).unwrap()
}

/// Serves the initial lists of every default resource.
fn serve_lists(srv: &TestServer) {
    for r in Resource::DEFAULT {
        srv.list(r.path(), &format!("{}.json", r.name()));
    }
}

fn network() -> Inventory {
    Inventory::parse(
        r#"
regions: [{name: eu-west-1}]
azs: [{name: eu-west-1a, region: eu-west-1}, {name: eu-west-1b, region: eu-west-1}]
vpcs: [{name: prod, region: eu-west-1}]
subnets:
  - {name: pods, vpc: prod, cidrs: [10.244.0.0/16, "fd00:244::/48"]}
  - {name: services, vpc: prod, cidrs: [10.96.0.0/12]}
  - {name: nodes, vpc: prod, cidrs: [192.168.10.0/24], az: eu-west-1a}
"#,
        deepflow_tagging::Format::Yaml,
        "network.yaml",
    )
    .unwrap()
}

fn source(srv: &TestServer) -> KubeSource {
    let mut cfg = KubeSourceConfig::new("prod-eks");
    cfg.vpc = Some("prod".into());
    KubeSource::new(client(srv), cfg)
}

fn name(t: &Tagger, kind: ResourceKind, id: u32) -> String {
    t.name(kind, id).unwrap_or_else(|| format!("<{kind} {id}>"))
}

#[test]
fn list_then_watch_with_churn_bookmark_and_410_relist() {
    let srv = TestServer::start(false);
    serve_lists(&srv);
    let src = source(&srv);
    for (r, res) in src.sync_once() {
        assert_eq!(res, Ok(Step::Listed), "{r:?}");
    }
    let tagger = Tagger::new(TaggerOptions::default()).unwrap();
    tagger.update_source("network", network()).unwrap();
    tagger.update_source(&src.source_name(), src.inventory()).unwrap();
    let snap = tagger.snapshot();
    let vpc = tagger.vpc_id("prod").unwrap();

    // pod -> deployment through its ReplicaSet; service from the EndpointSlice; node/az/region from labels
    let t = snap.lookup_ip(None, ip("10.244.0.15"));
    assert_eq!(name(&tagger, ResourceKind::Pod, t.pod_id), "web-7d4b9c5f8d-abcde");
    assert_eq!(name(&tagger, ResourceKind::PodGroup, t.pod_group_id), "web");
    assert_eq!(tagger.id(ResourceKind::PodGroup, "prod-eks/shop/deployment/web"), Some(t.pod_group_id));
    assert_eq!(name(&tagger, ResourceKind::Service, t.service_id), "web");
    assert_eq!(name(&tagger, ResourceKind::PodNs, t.pod_ns_id), "shop");
    assert_eq!(name(&tagger, ResourceKind::PodNode, t.pod_node_id), "node-a");
    assert_eq!(name(&tagger, ResourceKind::Host, t.host_id), "node-a");
    assert_eq!(name(&tagger, ResourceKind::Az, t.az_id), "eu-west-1a");
    assert_eq!(name(&tagger, ResourceKind::Region, t.region_id), "eu-west-1");
    assert_eq!(name(&tagger, ResourceKind::Subnet, t.subnet_id), "pods");
    assert_eq!(name(&tagger, ResourceKind::PodCluster, t.pod_cluster_id), "prod-eks");
    assert_eq!(t.l3_epc_id, vpc);
    // dual-stack pod IP
    let t6 = snap.lookup_ip(Some(vpc), ip("fd00:244:1::16"));
    assert_eq!(name(&tagger, ResourceKind::Pod, t6.pod_id), "web-7d4b9c5f8d-fghij");
    assert_eq!(name(&tagger, ResourceKind::Az, t6.az_id), "eu-west-1b");
    // statefulset pod, service by selector (headless service, no slice)
    let db = snap.lookup_ip(None, ip("10.244.1.20"));
    assert_eq!(name(&tagger, ResourceKind::PodGroup, db.pod_group_id), "db");
    assert_eq!(name(&tagger, ResourceKind::Service, db.service_id), "db");
    // finished CronJob pod: not indexed by IP, but its group is the CronJob
    let done = snap.lookup_ip(None, ip("10.244.0.30"));
    assert_eq!(done.pod_id, 0);
    assert_eq!(done.subnet_id, t.subnet_id);
    assert!(tagger.id(ResourceKind::PodGroup, "prod-eks/shop/cronjob/report").is_some());
    // bare pod is its own group; hostNetwork pod does not steal the node IP
    let dbg = snap.lookup_ip(None, ip("10.244.0.40"));
    assert_eq!(tagger.id(ResourceKind::PodGroup, "prod-eks/default/pod/debug"), Some(dbg.pod_group_id));
    let node = snap.lookup_ip(None, ip("192.168.10.11"));
    assert_eq!((node.pod_id, name(&tagger, ResourceKind::PodNode, node.pod_node_id)), (0, "node-a".into()));
    // ClusterIP, IPv6 ClusterIP and load-balancer IP
    for a in ["10.96.12.34", "fd00:96::1234", "203.0.113.80"] {
        let s = snap.lookup_ip(None, ip(a));
        assert_eq!(name(&tagger, ResourceKind::Service, s.service_id), "web", "{a}");
        assert_eq!(s.pod_id, 0);
    }
    // container id -> pod for processes (eBPF), via an inventory process entry
    // labels: pods, namespaces (last-applied-configuration skipped), nodes
    let ns_labels: Vec<_> = snap.labels().iter().filter(|l| l.kind == ResourceKind::PodNs).collect();
    let keys: Vec<String> = ns_labels.iter().map(|l| name(&tagger, ResourceKind::LabelKey, l.key_id)).collect();
    assert!(keys.contains(&"team".to_string()) && keys.contains(&"owner".to_string()), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("last-applied")));

    // ---- watch: a new pod takes the same IP before the old one's DELETED arrives
    srv.push(Resource::Pods.path(), true, Resp::Stream(fixture("pods-watch-churn.jsonl")));
    let results = src.sync_once();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let pods = src.reflector(Resource::Pods).unwrap();
    assert_eq!(pods.resource_version(), Some("1015"), "bookmark advances the resourceVersion");
    assert_eq!(pods.stats().bookmarks, 1);
    assert!(srv.requests_for("/api/v1/pods?watch=true").iter().any(|q| q.contains("resourceVersion=1010")));
    tagger.update_source(&src.source_name(), src.inventory()).unwrap();
    let t = tagger.snapshot().lookup_ip(None, ip("10.244.0.15"));
    assert_eq!(name(&tagger, ResourceKind::Pod, t.pod_id), "web-7d4b9c5f8d-zzzzz", "newer pod wins the reused IP");
    assert_eq!(name(&tagger, ResourceKind::PodNode, t.pod_node_id), "node-b");

    // ---- the old pod's DELETED, then a 410 on the next watch -> relist
    srv.push(Resource::Pods.path(), true, Resp::Stream(fixture("pods-watch-delete.jsonl")));
    src.sync_once();
    assert_eq!(src.reflector(Resource::Pods).unwrap().resource_version(), Some("1016"));
    srv.push(Resource::Pods.path(), true, Resp::Stream(fixture("watch-410.jsonl")));
    srv.list(Resource::Pods.path(), "pods-relist.json");
    let res = src.sync_once();
    let pods_res = res.iter().find(|(r, _)| *r == Resource::Pods).unwrap();
    assert_eq!(pods_res.1, Ok(Step::Relisted));
    let pods = src.reflector(Resource::Pods).unwrap();
    assert_eq!(pods.resource_version(), Some("2401"));
    assert_eq!(pods.stats().relists_gone, 1);
    assert_eq!(pods.objects().len(), 1);
    tagger.update_source(&src.source_name(), src.inventory()).unwrap();
    let snap = tagger.snapshot();
    assert_eq!(
        name(&tagger, ResourceKind::Pod, snap.lookup_ip(None, ip("10.244.0.15")).pod_id),
        "web-7d4b9c5f8d-zzzzz"
    );
    assert_eq!(snap.lookup_ip(None, ip("10.244.1.16")).pod_id, 0, "pods gone from the relist are gone");
    // old ids keep resolving (rows written earlier)
    assert!(tagger.id(ResourceKind::Pod, "prod-eks/shop/web-7d4b9c5f8d-abcde").is_some());
}

#[test]
fn http_410_on_watch_relists() {
    let srv = TestServer::start(false);
    srv.list("/api/v1/namespaces", "namespaces.json");
    let mut cfg = KubeSourceConfig::new("c");
    cfg.resources = vec![Resource::Namespaces];
    let src = KubeSource::new(client(&srv), cfg);
    assert_eq!(src.sync_once()[0].1, Ok(Step::Listed));
    srv.push("/api/v1/namespaces", true, Resp::Json(410, fixture("status-410.json")));
    srv.list("/api/v1/namespaces", "namespaces.json");
    assert_eq!(src.sync_once()[0].1, Ok(Step::Relisted));
}

#[test]
fn errors_keep_the_last_good_state() {
    let srv = TestServer::start(false);
    serve_lists(&srv);
    let src = source(&srv);
    src.sync_once();
    let tagger = Tagger::new(TaggerOptions::default()).unwrap();
    tagger.update_source("network", network()).unwrap();
    tagger.update_source(&src.source_name(), src.inventory()).unwrap();
    let before = tagger.snapshot().lookup_ip(None, ip("10.244.0.15"));
    assert_ne!(before.pod_id, 0);

    // 500 on a watch: clear error naming the resource; objects unchanged
    srv.push("/api/v1/pods", true, Resp::Json(500, fixture("status-500.json")));
    let r = src.sync_once().into_iter().find(|(r, _)| *r == Resource::Pods).unwrap().1;
    let e = r.unwrap_err();
    assert!(matches!(e, KubeError::Status { code: 500, .. }), "{e:?}");
    assert!(e.to_string().contains("pods") && e.to_string().contains("etcdserver: request timed out"), "{e}");
    assert_eq!(src.reflector(Resource::Pods).unwrap().objects().len(), 6);
    assert_eq!(src.reflector(Resource::Pods).unwrap().stats().last_error, Some(e));

    // truncated watch stream: the complete first event is applied, the cut one is an error,
    // and the watch resumes from the last applied event
    let churn = fixture("pods-watch-churn.jsonl");
    let first_len = churn.lines().next().unwrap().len() + 1;
    srv.push("/api/v1/pods", true, Resp::CutStream(churn.clone(), first_len + 40));
    let r = src.sync_once().into_iter().find(|(r, _)| *r == Resource::Pods).unwrap().1;
    let e = r.unwrap_err();
    assert!(matches!(e, KubeError::Truncated { .. }), "{e:?}");
    let pods = src.reflector(Resource::Pods).unwrap();
    assert_eq!(pods.resource_version(), Some("1011"));
    assert_eq!(pods.objects().len(), 7);
    src.sync_once(); // empty watch from 1011
    assert!(srv.requests_for("/api/v1/pods?watch=true").last().unwrap().contains("resourceVersion=1011"));

    // bad JSON in a watch event: error, state kept, next round relists
    srv.push("/api/v1/pods", true, Resp::Stream("{\"type\":\"MODIFIED\",\"object\":{\"metadata\":[1,2]}}\n".into()));
    let e = src.sync_once().into_iter().find(|(r, _)| *r == Resource::Pods).unwrap().1.unwrap_err();
    assert!(matches!(e, KubeError::Decode { .. }), "{e:?}");
    assert_eq!(src.reflector(Resource::Pods).unwrap().objects().len(), 7);
    // the relist itself fails with bad JSON: previous objects stay
    srv.push("/api/v1/pods", false, Resp::Json(200, "{\"kind\":\"PodList\",\"items\":[{\"metadata\":".into()));
    let e = src.sync_once().into_iter().find(|(r, _)| *r == Resource::Pods).unwrap().1.unwrap_err();
    assert!(matches!(e, KubeError::Decode { .. }) && e.to_string().contains("pods"), "{e}");
    assert_eq!(src.reflector(Resource::Pods).unwrap().objects().len(), 7);
    // a list body cut short
    srv.push("/api/v1/pods", false, Resp::CutBody(fixture("pods.json"), 100));
    let e = src.sync_once().into_iter().find(|(r, _)| *r == Resource::Pods).unwrap().1.unwrap_err();
    assert!(matches!(e, KubeError::Truncated { .. } | KubeError::Decode { .. }), "{e:?}");
    // then a good relist
    srv.list("/api/v1/pods", "pods-relist.json");
    let r = src.sync_once().into_iter().find(|(r, _)| *r == Resource::Pods).unwrap().1;
    assert_eq!(r, Ok(Step::Listed));
    assert_eq!(src.reflector(Resource::Pods).unwrap().objects().len(), 1);
    // the tagger kept serving the old snapshot throughout
    assert_eq!(tagger.snapshot().lookup_ip(None, ip("10.244.0.15")), before);
}

#[test]
fn auth_and_retry_errors_are_clear() {
    let srv = TestServer::start(false);
    let mut cfg = KubeSourceConfig::new("c");
    cfg.resources = vec![Resource::Nodes];
    cfg.retry.max_attempts = 3;
    cfg.retry.initial_backoff = std::time::Duration::from_millis(10);
    // wrong token -> 401 with the apiserver's message, after 3 attempts
    let bad = KubeClient::new(KubeConfig::new(srv.url()).with_token("wrong")).unwrap();
    let src = KubeSource::new(bad, cfg.clone());
    let e = src.sync_with_retry().unwrap_err();
    assert!(matches!(e, KubeError::Status { code: 401, .. }), "{e:?}");
    assert!(e.to_string().contains("nodes") && e.to_string().contains("Unauthorized"), "{e}");
    assert_eq!(srv.requests_for("/api/v1/nodes").len(), 3);
    // 500 twice then success: retried
    srv.push("/api/v1/nodes", false, Resp::Json(500, fixture("status-500.json")));
    srv.push("/api/v1/nodes", false, Resp::Json(500, fixture("status-500.json")));
    srv.list("/api/v1/nodes", "nodes.json");
    let src = KubeSource::new(client(&srv), cfg);
    src.sync_with_retry().unwrap();
    assert_eq!(src.reflector(Resource::Nodes).unwrap().objects().len(), 2);
    // nothing listening: a connection error naming the URL
    let dead = KubeClient::new(KubeConfig::new("http://127.0.0.1:9")).unwrap();
    let mut c = KubeSourceConfig::new("c");
    c.resources = vec![Resource::Pods];
    let e = KubeSource::new(dead, c).sync_once().remove(0).1.unwrap_err();
    assert!(matches!(e, KubeError::Http { .. }) && e.to_string().contains("127.0.0.1:9"), "{e}");
}

#[test]
fn paginated_list_follows_continue() {
    let srv = TestServer::start(false);
    let page1 = r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"77","continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NzcsInN0YXJ0IjoiZGVmYXVsdFx1MDAwMCJ9","remainingItemCount":1},"items":[{"metadata":{"name":"default","resourceVersion":"1"}}]}"#;
    let page2 = r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"77"},"items":[{"metadata":{"name":"kube-system","resourceVersion":"2"}}]}"#;
    srv.push("/api/v1/namespaces", false, Resp::Json(200, page1.into()));
    srv.push("/api/v1/namespaces", false, Resp::Json(200, page2.into()));
    let mut cfg = KubeSourceConfig::new("c");
    cfg.resources = vec![Resource::Namespaces];
    let src = KubeSource::new(client(&srv), cfg);
    assert_eq!(src.sync_once()[0].1, Ok(Step::Listed));
    let r = src.reflector(Resource::Namespaces).unwrap();
    assert_eq!(r.objects().keys().cloned().collect::<Vec<_>>(), ["default", "kube-system"]);
    assert_eq!(r.resource_version(), Some("77"));
    let reqs = srv.requests_for("/api/v1/namespaces");
    assert!(reqs[1].contains("continue=eyJ2Ijoi"), "{reqs:?}");
}

#[test]
fn https_with_ca_and_bearer_token() {
    let srv = TestServer::start(true);
    serve_lists(&srv);
    let src = source(&srv);
    for (r, res) in src.sync_once() {
        assert_eq!(res, Ok(Step::Listed), "{r:?}");
    }
    assert_eq!(src.inventory().pods.len(), 6);
    // without the CA the TLS handshake fails with a clear error
    let no_ca = KubeClient::new(KubeConfig::new(srv.url()).with_token(TOKEN)).unwrap();
    let mut c = KubeSourceConfig::new("c");
    c.resources = vec![Resource::Pods];
    let e = KubeSource::new(no_ca, c).sync_once().remove(0).1.unwrap_err();
    assert!(matches!(e, KubeError::Http { .. }), "{e:?}");
    // a CA bundle without certificates is a config error
    let e = KubeClient::new(KubeConfig::new(srv.url()).with_ca_pem(b"not a pem".to_vec())).unwrap_err();
    assert!(matches!(e, KubeError::Config(_)), "{e:?}");
}

#[test]
fn run_loop_pushes_into_the_tagger_and_stops() {
    let srv = TestServer::start(false);
    serve_lists(&srv);
    let mut cfg = KubeSourceConfig::new("prod-eks");
    cfg.vpc = Some("prod".into());
    cfg.rebuild_interval = std::time::Duration::from_millis(10);
    let mut kc = KubeConfig::new(srv.url()).with_token(TOKEN);
    kc.watch_timeout = std::time::Duration::from_secs(1);
    let src = KubeSource::new(KubeClient::new(kc).unwrap(), cfg);
    let tagger = Tagger::new(TaggerOptions::default()).unwrap();
    tagger.update_source("network", network()).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| src.run(&tagger, &stop, &|e| eprintln!("kube error: {e}")));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tagger.snapshot().lookup_ip(None, ip("10.244.0.15")).pod_id == 0 {
            assert!(std::time::Instant::now() < deadline, "run loop never delivered");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let t = tagger.snapshot().tag(&Endpoint::ip(ip("10.244.0.15")));
    assert_eq!(tagger.name(ResourceKind::Service, t.service_id).as_deref(), Some("web"));
}

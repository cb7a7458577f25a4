"""The deployment files no test can start here (no Docker engine, no Kubernetes) checked for
consistency with the ones that are exercised: the same config files, ports and flags."""
import os
import re
import subprocess
import tempfile
import unittest

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
TAILORD = os.environ.get("TAILORD_BINARY", os.path.join(ROOT, "build", "bin", "tailord"))


def load(path):
    with open(os.path.join(DEPLOY, path)) as f:
        return list(yaml.safe_load_all(f))


def tailord_flags():
    out = subprocess.run([TAILORD, "--helpfull"], capture_output=True, text=True).stdout
    return set(re.findall(r"--([a-z_]+)", out))


class DockerfileAndCompose(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            self.dockerfile = f.read()
        (self.compose,) = load("compose/docker-compose.yml")

    def test_image_serves_the_ports_compose_publishes_on_loopback_by_default(self):
        self.assertIn("EXPOSE 50051 9464", self.dockerfile)
        self.assertIn("--listen=0.0.0.0:50051", self.dockerfile)
        self.assertIn("--metrics_listen=0.0.0.0:9464", self.dockerfile)
        published = {"tailord": ("50051", "9464"), "prometheus": ("9090",), "grafana": ("3000",)}
        for name, ports in published.items():
            mapped = self.compose["services"][name]["ports"]
            for port in ports:
                self.assertIn(f"${{TAILOR_PUBLISH_ADDRESS:-127.0.0.1}}:{port}:{port}", mapped)

    def test_prometheus_and_grafana_survive_tailord_restarts(self):
        services = self.compose["services"]
        compose_dir = os.path.join(DEPLOY, "compose")
        for name in ("prometheus", "grafana"):
            # Their own network namespace: a tailord restart does not take them down.
            self.assertNotIn("network_mode", services[name])
            for volume in services[name]["volumes"]:
                source = volume.split(":")[0]
                if source.startswith("."):
                    self.assertTrue(os.path.exists(os.path.join(compose_dir, source)), source)
        # Compose's Prometheus scrapes tailord by service name, with the shipped job and rules;
        # the Grafana datasource is Prometheus by service name.
        (prometheus,) = load("compose/prometheus.yml")
        self.assertEqual(prometheus["scrape_configs"][0]["job_name"], "tailor")
        targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        self.assertEqual(targets, ["tailord:9464"])
        self.assertIn("../prometheus/rules:/etc/prometheus/rules:ro",
                      services["prometheus"]["volumes"])
        self.assertEqual(prometheus["rule_files"], ["/etc/prometheus/rules/*.yml"])
        self.assertIn("--web.listen-address=0.0.0.0:9090", services["prometheus"]["command"])
        (datasources,) = load("compose/grafana-datasources/prometheus.yml")
        self.assertEqual(datasources["datasources"][0]["url"], "http://prometheus:9090")
        (providers,) = load("grafana/provisioning/dashboards/tailor.yml")
        dashboards_mount = [v for v in services["grafana"]["volumes"]
                            if v.startswith("../grafana/dashboards:")]
        self.assertEqual(dashboards_mount[0].split(":")[1],
                         providers["providers"][0]["options"]["path"])


class Kubernetes(unittest.TestCase):
    def setUp(self):
        docs = load("k8s/tailor.yaml")
        self.service = next(d for d in docs if d["kind"] == "Service")
        self.statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
        router = load("k8s/router.yaml")
        config_map = next(d for d in router if d["kind"] == "ConfigMap")
        self.envoy = yaml.safe_load(config_map["data"]["envoy.yaml"])

    def test_statefulset_probes_ports_and_flags(self):
        self.assertEqual(self.service["spec"]["clusterIP"], "None")
        spec = self.statefulset["spec"]
        self.assertEqual(spec["serviceName"], self.service["metadata"]["name"])
        self.assertTrue(spec["volumeClaimTemplates"])
        container = spec["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports, {"grpc": 50051, "metrics": 9464})
        self.assertEqual(container["readinessProbe"]["grpc"]["port"], 50051)
        self.assertEqual(container["livenessProbe"]["grpc"]["port"], 50051)
        # Loading users can take minutes (health NOT_SERVING meanwhile): a startup probe
        # holds the liveness probe off, which then needs no initial delay.
        self.assertEqual(container["startupProbe"]["grpc"]["port"], 50051)
        startup = container["startupProbe"]
        self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 600)
        self.assertNotIn("initialDelaySeconds", container["livenessProbe"])
        self.assertIn("requests", container["resources"])
        known = tailord_flags()
        self.assertIn("listen", known)
        for arg in container["args"]:
            self.assertIn(arg.lstrip("-").split("=")[0], known, arg)
        grace_ms = next(int(a.split("=")[1]) for a in container["args"]
                        if a.startswith("--shutdown_grace_ms="))
        self.assertLess(grace_ms / 1000, spec["template"]["spec"]["terminationGracePeriodSeconds"])

    def test_router_hashes_the_user_header_over_every_shard_and_never_fails_over(self):
        listener = self.envoy["static_resources"]["listeners"][0]
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        routes = manager["route_config"]["virtual_hosts"][0]["routes"]
        route = next(r["route"] for r in routes if r["match"] == {"prefix": "/"})
        # Admin calls are refused, not hashed to an arbitrary shard (as nginx does).
        admin = next(r for r in routes if r["match"] == {"prefix": "/tailor.v1.TailorAdmin/"})
        self.assertLess(routes.index(admin), routes.index(next(r for r in routes
                                                               if r["match"] == {"prefix": "/"})))
        headers = {h["header"]["key"]: h["header"]["value"] for h in admin["response_headers_to_add"]}
        self.assertEqual(headers["grpc-status"], "9")
        self.assertEqual(route["hash_policy"], [{"header": {"header_name": "x-user-id"}}])
        self.assertNotIn("retry_policy", route)
        cluster = next(c for c in self.envoy["static_resources"]["clusters"]
                       if c["name"] == "tailor_shards")
        self.assertEqual(cluster["lb_policy"], "RING_HASH")
        self.assertNotIn("health_checks", cluster)
        self.assertNotIn("outlier_detection", cluster)
        endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        replicas = self.statefulset["spec"]["replicas"]
        self.assertEqual(len(endpoints), replicas)
        for i, endpoint in enumerate(endpoints):
            address = endpoint["endpoint"]["address"]["socket_address"]
            self.assertEqual(address["address"], f"tailor-{i}.tailor")
            self.assertEqual(address["port_value"], 50051)
            self.assertEqual(endpoint["metadata"]["filter_metadata"]["envoy.lb"]["hash_key"],
                             f"tailor-{i}")


    def test_envoy_admin_listens_on_loopback_and_only_stats_and_ready_are_exposed(self):
        admin = self.envoy["admin"]["address"]["socket_address"]
        self.assertEqual(admin["address"], "127.0.0.1")
        stats = next(l for l in self.envoy["static_resources"]["listeners"]
                     if l["name"] == "stats")
        manager = stats["filter_chains"][0]["filters"][0]["typed_config"]
        paths = [r["match"]["path"] for r in manager["route_config"]["virtual_hosts"][0]["routes"]]
        self.assertEqual(sorted(paths), ["/ready", "/stats/prometheus"])
        router = load("k8s/router.yaml")
        deployment = next(d for d in router if d["kind"] == "Deployment")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/port"],
                         str(stats["address"]["socket_address"]["port_value"]))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("livenessProbe", container)
        self.assertIn("limits", container["resources"])

    def test_disruption_budgets_spread_and_network_policies(self):
        docs = load("k8s/tailor.yaml") + load("k8s/router.yaml")
        budgets = {d["metadata"]["name"]: d["spec"] for d in docs
                   if d["kind"] == "PodDisruptionBudget"}
        self.assertEqual(budgets["tailor"]["maxUnavailable"], 1)
        self.assertIn("tailor-router", budgets)
        pod = self.statefulset["spec"]["template"]["spec"]
        self.assertIn("podAntiAffinity", pod["affinity"])
        self.assertTrue(pod["topologySpreadConstraints"])
        policies = {d["metadata"]["name"]: d["spec"] for d in docs
                    if d["kind"] == "NetworkPolicy"}
        shard_grpc = policies["tailor"]["ingress"][0]
        self.assertEqual(shard_grpc["from"], [{"podSelector": {"matchLabels": {"app": "tailor-router"}}}])
        self.assertIn("tailor-router", policies)

    def test_operator_monitoring_matches_the_shipped_rules_and_job(self):
        pod_monitor, rule = load("k8s/monitoring.yaml")
        self.assertEqual(pod_monitor["kind"], "PodMonitor")
        # job = the pods' "app" label, "tailor": what the alerts and dashboard select.
        self.assertEqual(pod_monitor["spec"]["jobLabel"], "app")
        labels = self.statefulset["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(labels["app"], "tailor")
        self.assertEqual(pod_monitor["spec"]["podMetricsEndpoints"][0]["port"], "metrics")
        (shipped,) = load("prometheus/rules/tailor.yml")
        self.assertEqual(rule["kind"], "PrometheusRule")
        self.assertEqual(rule["spec"]["groups"], shipped["groups"])

    def test_manifests_pass_the_api_schemas_and_the_restricted_pod_security_standard(self):
        checker = os.path.join(ROOT, "tests", "deploy", "k8s-schemas", "validate.mjs")
        manifests = [os.path.join(DEPLOY, "k8s", f) for f in sorted(os.listdir(
            os.path.join(DEPLOY, "k8s"))) if f.endswith(".yaml")]
        ok = subprocess.run(["node", checker, *manifests], capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertEqual(ok.stdout.count("documents checked"), len(manifests))
        # The checker is not vacuous: a wrong type and a privileged container are caught.
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as bad:
            bad.write("""apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  replicas: "three"
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers:
        - {name: c, image: "nginx:latest", securityContext: {privileged: true}}
""")
            bad.flush()
            caught = subprocess.run(["node", checker, bad.name], capture_output=True, text=True)
        self.assertEqual(caught.returncode, 1)
        self.assertIn("spec/replicas must be integer", caught.stdout)
        self.assertIn("restricted PSS: container c is privileged", caught.stdout)
        self.assertIn("not pinned", caught.stdout)


class Nginx(unittest.TestCase):
    def test_routing_rules_that_keep_users_on_one_shard(self):
        with open(os.path.join(DEPLOY, "nginx", "tailor.conf")) as f:
            conf = f.read()
        self.assertIn("hash $http_x_user_id consistent;", conf)
        self.assertIn("grpc_next_upstream off;", conf)
        self.assertIn("client_max_body_size 0;", conf)
        with open(os.path.join(DEPLOY, "nginx", "tailor-shards.conf.example")) as f:
            servers = [line for line in f if line.startswith("server ")]
        self.assertTrue(servers)
        self.assertTrue(all("max_fails=0" in line for line in servers))


if __name__ == "__main__":
    unittest.main()


class ClusterKubernetes(unittest.TestCase):
    """deploy/k8s-cluster: three NATS servers with JetStream and shards in cluster mode."""

    def setUp(self):
        self.docs = load("k8s-cluster/cluster.yaml")
        self.sets = {d["metadata"]["name"]: d for d in self.docs if d["kind"] == "StatefulSet"}

    def test_shards_name_every_nats_server_and_use_known_flags(self):
        nats = self.sets["nats"]
        self.assertEqual(nats["spec"]["replicas"], 3)
        config = next(d for d in self.docs if d["kind"] == "ConfigMap")["data"]["nats.conf"]
        self.assertIn("jetstream", config)
        for i in range(3):
            self.assertIn(f"nats://nats-{i}.nats:6222", config)
        shards = self.sets["tailor-cluster"]
        container = shards["spec"]["template"]["spec"]["containers"][0]
        known = tailord_flags()
        args = {a.lstrip("-").split("=")[0]: a.split("=", 1)[1] if "=" in a else ""
                for a in container["args"]}
        for name in args:
            self.assertIn(name, known)
        self.assertEqual(args["cluster_nats"].split(","),
                         [f"nats://nats-{i}.nats:4222" for i in range(3)])
        self.assertEqual(args["cluster_advertise"], "$(POD_NAME).tailor-cluster:50051")
        self.assertEqual(shards["spec"]["serviceName"], "tailor-cluster")
        job = next(d for d in self.docs if d["kind"] == "Job")
        command = job["spec"]["template"]["spec"]["containers"][0]["command"]
        self.assertEqual(command[:3], ["tailorctl", "cluster", "rebalance"])
        self.assertIn(f"--partitions={args['cluster_partitions']}", command)

    def test_manifests_pass_the_api_schemas_and_the_restricted_pod_security_standard(self):
        checker = os.path.join(ROOT, "tests", "deploy", "k8s-schemas", "validate.mjs")
        path = os.path.join(DEPLOY, "k8s-cluster", "cluster.yaml")
        ok = subprocess.run(["node", checker, path], capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)


class ClusterCompose(unittest.TestCase):
    """deploy/compose/cluster.yml: the same shape as the Kubernetes cluster."""

    def test_shards_use_known_flags_and_prometheus_scrapes_each(self):
        (compose,) = load("compose/cluster.yml")
        services = compose["services"]
        known = tailord_flags()
        shards = sorted(name for name in services if name.startswith("shard-"))
        self.assertEqual(shards, ["shard-0", "shard-1", "shard-2"])
        for name in shards:
            args = {a.lstrip("-").split("=")[0]: a.split("=", 1)[1] for a in
                    services[name]["command"]}
            for flag in args:
                self.assertIn(flag, known)
            self.assertEqual(args["shard_name"], name)
            self.assertEqual(args["cluster_advertise"], f"{name}:50051")
            self.assertEqual(args["cluster_nats"].split(","),
                             [f"nats://nats-{i}:4222" for i in range(3)])
        for i in range(3):
            self.assertIn("-js", services[f"nats-{i}"]["command"])
        (prometheus,) = load("compose/prometheus-cluster.yml")
        self.assertEqual(prometheus["scrape_configs"][0]["job_name"], "tailor")
        self.assertEqual(prometheus["scrape_configs"][0]["static_configs"][0]["targets"],
                         [f"{name}:9464" for name in shards])
        self.assertIn("./prometheus-cluster.yml:/etc/prometheus/prometheus.yml:ro",
                      services["prometheus"]["volumes"])

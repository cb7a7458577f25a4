"""Observability end to end: a real tailord under simulated users, `promtool check metrics` on
its /metrics, and a real Prometheus (Debian's) on loopback scraping it, through whose HTTP API
every PromQL expression of the Grafana dashboard must return data."""
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "client", "python", "tests"))
from tailor_client import TailorClient, TailorError, tailor_pb2  # noqa: E402
from test_client import TailordServer  # noqa: E402

DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "dashboards", "tailor.json")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def dashboard_exprs(rate_interval="1m", cluster=False):
    """Every panel's PromQL, with the dashboard's variables as Grafana would fill them for the
    job "tailor", all shards, and a $__rate_interval of `rate_interval`. The cluster-mode row
    only with `cluster` (a single node has no tailor_cluster_* series; tests/cluster checks
    those metrics against cluster shards)."""
    exprs = []
    def walk(panels):
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))
    walk(json.load(open(DASHBOARD))["panels"])
    return [e.replace("$__rate_interval", rate_interval).replace("$job", "tailor")
             .replace("$instance", ".*") for e in exprs
            if cluster or "tailor_cluster_" not in e]


class Traffic(threading.Thread):
    """Simulated users: feedback (applied, duplicate, invalid), rankings, a stream."""

    def __init__(self, client, schema):
        super().__init__(daemon=True)
        self.client, self.schema, self.stop = client, schema, threading.Event()
        self.rng = random.Random(1)

    def candidate(self, cid):
        return (cid, [f.mean + f.sd * self.rng.gauss(0, 1) for f in self.schema])

    def run(self):
        turn = 0
        while not self.stop.is_set():
            user = f"sim-{turn % 12}"
            a, b = self.candidate("a"), self.candidate("b")
            self.client.feedback(f"ev-{turn}", user, a, b)
            if turn % 5 == 0:
                self.client.feedback(f"ev-{turn}", user, a, b)  # duplicate
            if turn % 7 == 0:
                try:
                    self.client.rank(user, [("x", [1.0])])  # invalid
                except TailorError:
                    pass
            self.client.rank(user, [self.candidate(f"c{i}") for i in range(8)])
            self.client.rank(f"stranger-{turn}", [self.candidate(f"c{i}") for i in range(8)])
            if turn % 25 == 0:
                events = [tailor_pb2.FeedbackEvent(
                    event_id=f"st-{turn}-{i}", user_id=user,
                    chosen=tailor_pb2.Candidate(id="a", features=self.candidate("a")[1]),
                    rejected=tailor_pb2.Candidate(id="b", features=self.candidate("b")[1]))
                    for i in range(5)]
                list(self.client.stream_feedback(events))
            turn += 1
            time.sleep(0.005)


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = TailordServer()
        cls.client = TailorClient(f"127.0.0.1:{cls.server.port}")
        cls.schema = cls.client.server_info().schema.features
        cls.traffic = Traffic(cls.client, cls.schema)
        cls.traffic.start()
        time.sleep(1.0)

    @classmethod
    def tearDownClass(cls):
        cls.traffic.stop.set()
        cls.traffic.join()
        cls.client.close()
        assert cls.server.stop() == 0

    def test_promtool_accepts_the_exposition(self):
        body = http_get(f"http://127.0.0.1:{self.server.metrics_port}/metrics")
        for name in ["tailor_rpc_requests_total", "tailor_rpc_latency_seconds_bucket",
                     "tailor_feedback_events_total", "tailor_predictions_total",
                     "tailor_rankings_total", "tailor_users", "tailor_rocksdb_live_sst_bytes",
                     "process_resident_memory_bytes", "tailor_build_info",
                     "tailor_feedback_ack_latency_seconds_bucket",
                     "tailor_storage_commit_seconds_bucket", "tailor_knowledge_age_seconds",
                     "tailor_belief_cache_hits_total", "tailor_work_queue_depth",
                     "tailor_disk_free_bytes", "tailor_routing_refusals_total",
                     "process_max_fds"]:
            self.assertIn(name, body)
        self.assertNotIn("sim-", body, "a user id leaked into a label")
        # A stream's duration is not a latency: its events' ack latencies are.
        self.assertNotIn('tailor_rpc_latency_seconds_count{method="StreamFeedback"}', body)
        acks = re.search(r"^tailor_feedback_ack_latency_seconds_count (\S+)$", body, re.M)
        self.assertIsNotNone(acks)
        self.assertGreater(float(acks.group(1)), 0)
        # Buckets fine enough to tell a 10 us ranking from a 20 us one.
        self.assertIn('tailor_rpc_latency_seconds_bucket{method="RankResponses",le="1e-05"}', body)
        check = subprocess.run(["promtool", "check", "metrics"], input=body,
                               capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_every_dashboard_expression_returns_data_in_prometheus(self):
        workdir = tempfile.mkdtemp(prefix="tailor-prom-")
        port = free_port()
        config = os.path.join(workdir, "prometheus.yml")
        # The shipped config, pointed at this test's tailord and scraping every second.
        with open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")) as f:
            shipped = f.read()
        shipped = shipped.replace('"localhost:9464"', f'"127.0.0.1:{self.server.metrics_port}"')
        shipped = re.sub(r"scrape_interval: \S+", "scrape_interval: 1s", shipped)
        shipped = shipped.replace("- rules/*.yml",
                                  f"- {os.path.join(ROOT, 'deploy', 'prometheus', 'rules')}/*.yml")
        open(config, "w").write(shipped)
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if "Ready" in http_get(f"{base}/-/ready"):
                        break
                except OSError:
                    time.sleep(0.2)
            missing = dashboard_exprs()
            self.assertGreater(len(missing), 20)
            deadline = time.time() + 90
            while missing and time.time() < deadline:
                time.sleep(2)
                still = []
                for expr in missing:
                    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
                    answer = json.loads(http_get(url))
                    self.assertEqual(answer["status"], "success", expr)
                    if not answer["data"]["result"]:
                        still.append(expr)
                missing = still
            self.assertEqual(missing, [], "dashboard expressions without data")
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
            shutil.rmtree(workdir, ignore_errors=True)


class FreshShardTest(unittest.TestCase):
    def test_a_coin_flip_counts_as_half_right(self):
        # Before any refresh a new shard predicts every event at exactly 0.5: neither right
        # nor wrong, so the learning curve's first bucket reads 50%, not 0%.
        server = TailordServer(["--refresh_ms=0"])
        client = TailorClient(f"127.0.0.1:{server.port}")
        try:
            schema = client.server_info().schema.features
            client.feedback("ev-1", "new-user", ("a", [f.mean + f.sd for f in schema]),
                            ("b", [f.mean - f.sd for f in schema]))
            body = http_get(f"http://127.0.0.1:{server.metrics_port}/metrics")
            def value(name):
                match = re.search(rf'^{name}{{experience="0"}} (\S+)$', body, re.M)
                self.assertIsNotNone(match, name)
                return float(match.group(1))
            self.assertEqual(value("tailor_predictions_total"), 1)
            self.assertEqual(value("tailor_predictions_correct_total"), 0.5)
        finally:
            client.close()
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()

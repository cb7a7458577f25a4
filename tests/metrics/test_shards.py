"""Operations end to end: three tailord shards behind Debian's nginx with the shipped routing
config, traffic through the router, and two real Prometheus servers with the shipped alert
rules scraping every shard: one every second, one every 60 s (the interval many production
setups use). One shard is stopped. The shard-down alert must fire (`/api/v1/alerts`), the
dashboard's availability panel must show two of three shards, and every dashboard expression
must still return data, at both scrape intervals."""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(__file__)
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "deploy"))
sys.path.insert(0, HERE)
from test_metrics import dashboard_exprs, free_port, http_get  # noqa: E402
from test_scaleout import Nginx, Shards  # noqa: E402
from tailor_client import TailorClient, TailorError, tailor_pb2  # noqa: E402

RULES = os.path.join(ROOT, "deploy", "prometheus", "rules")
AVAILABILITY = 'sum(up{job="tailor"}) / count(up{job="tailor"})'


class RouterTraffic(threading.Thread):
    """Users through the router: feedback (unary and streamed), rankings, some bad input. The
    stopped shard's users get UNAVAILABLE from nginx, as in production."""

    def __init__(self, client, features):
        super().__init__(daemon=True)
        self.client, self.features, self.stop = client, features, threading.Event()
        self.rng = random.Random(3)

    def candidate(self, cid):
        return (cid, [f.mean + f.sd * self.rng.gauss(0, 1) for f in self.features])

    def run(self):
        turn = 0
        while not self.stop.is_set():
            user = f"ops-{turn % 30}"
            try:
                self.client.feedback(f"ev-{turn}", user, self.candidate("a"), self.candidate("b"))
                self.client.rank(user, [self.candidate(f"c{i}") for i in range(8)])
                if turn % 7 == 0:
                    self.client.rank(user, [("x", [1.0])])  # INVALID_ARGUMENT
                if turn % 20 == 0:
                    events = [tailor_pb2.FeedbackEvent(
                        event_id=f"st-{turn}-{i}", user_id=user,
                        chosen=tailor_pb2.Candidate(id="a", features=self.candidate("a")[1]),
                        rejected=tailor_pb2.Candidate(id="b", features=self.candidate("b")[1]))
                        for i in range(4)]
                    list(self.client.stream_feedback(events, user_id=user))
            except TailorError:
                pass  # bad input, or a user of the stopped shard
            turn += 1
            time.sleep(0.005)


class Prometheus:
    """Debian's prometheus with the shipped config's rules, scraping the given targets."""

    def __init__(self, directory, targets, scrape_interval, evaluation_interval):
        self.dir = directory
        self.port = free_port()
        os.makedirs(directory)
        with open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")) as f:
            shipped = f.read()
        assert "- rules/*.yml" in shipped, "the shipped config no longer loads the rules"
        config = shipped.replace("- rules/*.yml", f"- {RULES}/*.yml")
        config = config.replace('["localhost:9464"]', json.dumps(targets))
        config = config.replace("scrape_interval: 15s", f"scrape_interval: {scrape_interval}")
        config = config.replace("evaluation_interval: 15s",
                                f"evaluation_interval: {evaluation_interval}")
        with open(os.path.join(directory, "prometheus.yml"), "w") as f:
            f.write(config)
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={directory}/prometheus.yml",
             f"--storage.tsdb.path={directory}/data", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if "Ready" in http_get(f"{self.base}/-/ready"):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr):
        answer = json.loads(http_get(f"{self.base}/api/v1/query?" +
                                     urllib.parse.urlencode({"query": expr})))
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def firing(self, alertname):
        alerts = json.loads(http_get(f"{self.base}/api/v1/alerts"))["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alertname
                and a["state"] == "firing"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class ShardDownTest(unittest.TestCase):
    def test_a_stopped_shard_pages_and_the_dashboard_shows_it(self):
        tmp = tempfile.mkdtemp(prefix="tailor-ops-")
        shards = Shards(tmp)
        nginx = Nginx(tmp, shards.ports)
        client = TailorClient(f"127.0.0.1:{nginx.port}", timeout=5)
        traffic = RouterTraffic(client, client.server_info().schema.features)
        targets = [f"127.0.0.1:{s.metrics_port}" for s in shards.servers]
        stopped = targets[2]
        fast = slow = None
        try:
            traffic.start()
            fast = Prometheus(os.path.join(tmp, "prom-1s"), targets, "1s", "1s")
            slow = Prometheus(os.path.join(tmp, "prom-60s"), targets, "60s", "15s")
            time.sleep(5)
            shards.stop(2)

            # The alert: up == 0 for a minute.
            deadline = time.time() + 150
            while time.time() < deadline and not fast.firing("TailorShardDown"):
                time.sleep(2)
            down = fast.firing("TailorShardDown")
            self.assertEqual([a["labels"]["instance"] for a in down], [stopped])
            self.assertEqual(down[0]["labels"]["severity"], "page")

            # The availability panel: two of three shards.
            (availability,) = fast.query(AVAILABILITY)
            self.assertAlmostEqual(float(availability["value"][1]), 2 / 3, places=6)
            per_shard = {r["metric"]["instance"]: float(r["value"][1])
                         for r in fast.query('up{job="tailor"}')}
            self.assertEqual(per_shard[stopped], 0)

            # Every panel has data at either scrape interval (Grafana's $__rate_interval is
            # four scrape intervals at least).
            for prometheus, rate_interval in ((fast, "1m"), (slow, "4m")):
                missing = dashboard_exprs(rate_interval)
                deadline = time.time() + 150
                while missing and time.time() < deadline:
                    missing = [e for e in missing if not prometheus.query(e)]
                    if missing:
                        time.sleep(3)
                self.assertEqual(missing, [], f"panels without data at {rate_interval}")
        finally:
            traffic.stop.set()
            traffic.join()
            client.close()
            for p in (fast, slow):
                if p is not None:
                    p.stop()
            nginx.stop()
            for i in range(len(shards.servers)):
                if shards.servers[i] is not None:
                    shards.stop(i)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()

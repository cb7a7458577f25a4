"""Cluster mode end to end: a three-node NATS JetStream cluster (Debian's nats-server) and
tailord shards in cluster mode, all on loopback, with a client writing continuously through
shards that do not own most users (one hop of forwarding). Each step is checked by exporting
every user and comparing with the events that were acked:

1. kill -9 one NATS node: writes go on; nothing acked is lost.
2. A shard's data directory is deleted: it rebuilds its partitions from the log.
3. A fourth shard is added and the partitions rebalanced under traffic: about a quarter move.
4. A shard is drained under traffic and removed.
5. Every read and write goes through a plain client that knows no map.
6. DeleteUser leaves nothing of the user on any shard (the log side: tests/cluster/shard_test).

And clients that read the map (Python, tailorctl's C++ client) call each owner directly, as does
Debian's nginx with the config that `tailorctl cluster router-config` generates: none of their
calls is forwarded, while the same calls through a client without the map are.
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "client", "python", "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "deploy"))
from tailor_client import (PARTITION_HEADER, TailorClient, TailorError,  # noqa: E402
                           partition_of, tailor_pb2, tailor_pb2_grpc)
from test_client import TailordServer  # noqa: E402
from test_scaleout import free_port, start_nginx, wait_for_port  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "tests", "metrics"))
from test_metrics import dashboard_exprs, http_get  # noqa: E402

TAILORCTL = os.environ.get("TAILORCTL_BINARY", os.path.join(ROOT, "build", "bin", "tailorctl"))
PARTITIONS = 16
USERS = 40


class NatsCluster:
    """Three nats-server processes with JetStream, routed to each other."""

    def __init__(self, directory):
        self.dir = directory
        self.ports = [free_port() for _ in range(3)]
        self.cluster_ports = [free_port() for _ in range(3)]
        self.procs = [None] * 3
        for i in range(3):
            self.start(i)
        for p in self.ports:
            wait_for_port(p)

    def start(self, i):
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.cluster_ports)
        store = os.path.join(self.dir, f"nats-{i}")
        log = open(os.path.join(self.dir, f"nats-{i}.log"), "a")
        self.procs[i] = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.ports[i]), "-js", "-sd", store,
             "-n", f"nats-{i}", "--cluster_name", "tailor",
             "--cluster", f"nats://127.0.0.1:{self.cluster_ports[i]}", "--routes", routes],
            stdout=log, stderr=log)

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def url(self):
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=15)


class Shard:
    def __init__(self, directory, name, nats_url, port=None):
        self.name, self.dir = name, os.path.join(directory, name)
        self.port = port or free_port()
        os.makedirs(self.dir, exist_ok=True)
        self.server = TailordServer(
            (f"--shard_name={name}", f"--cluster_nats={nats_url}",
             f"--cluster_partitions={PARTITIONS}", f"--cluster_advertise=127.0.0.1:{self.port}",
             "--refresh_ms=500"),
            # Rebuilding from the log comes before serving (and reading a partition takes
            # longer while a NATS server is down): up to --cluster_join_timeout_s (120 s).
            data_dir=self.dir, port=self.port, start_timeout=150)

    def stop(self):
        assert self.server.stop() == 0


def start_router(directory, config, port):
    """Debian's nginx in the foreground with `config` (an http-block include)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "tailor-cluster.conf"), "w") as f:
        f.write(config)
    return start_nginx(directory, "tailor-cluster.conf", port)


def ctl(nats_url, *args):
    return subprocess.run([TAILORCTL, "cluster", *args, f"--nats={nats_url}",
                           f"--partitions={PARTITIONS}"],
                          capture_output=True, text=True, timeout=180)


class Writer(threading.Thread):
    """Feedback for USERS users through a rotating shard, remembering each acked event."""

    def __init__(self, ports, features):
        super().__init__(daemon=True)
        self.ports, self.features = list(ports), features
        self.stop_event, self.lock = threading.Event(), threading.Lock()
        self.acked = {f"user-{u}": set() for u in range(USERS)}
        self.errors = []
        self.rng = random.Random(11)
        self.turn = 0

    def candidate(self, cid):
        return (cid, [f.mean + f.sd * self.rng.gauss(0, 1) for f in self.features])

    def run(self):
        while not self.stop_event.is_set():
            self.write_one()

    def write_one(self):
        with self.lock:
            ports = list(self.ports)
        user = f"user-{self.turn % USERS}"
        event_id = f"e{self.turn}"
        port = ports[self.turn % len(ports)]
        self.turn += 1
        client = TailorClient(f"127.0.0.1:{port}", timeout=10, route_to_owner=False)
        try:
            for _ in range(20):  # UNAVAILABLE while a shard or a NATS node is down: resend
                try:
                    ack = client.feedback(event_id, user, self.candidate("a"), self.candidate("b"))
                    assert ack.outcome in ("applied", "duplicate"), ack
                    with self.lock:
                        self.acked[user].add(event_id)
                    return
                except TailorError as e:
                    self.errors.append(str(e))
                    time.sleep(0.2)
        finally:
            client.close()

    def use_ports(self, ports):
        with self.lock:
            self.ports = list(ports)

    def snapshot(self):
        with self.lock:
            return {u: set(e) for u, e in self.acked.items()}


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tailor-cluster-")
        cls.nats = NatsCluster(cls.tmp)
        cls.shards = {}
        try:
            url = cls.nats.url()
            for i in range(3):
                cls.shards[f"s{i}"] = Shard(cls.tmp, f"s{i}", url)
            done = ctl(url, "rebalance")
            assert done.returncode == 0, done.stderr
            cls.wait_owned()
            client = TailorClient(f"127.0.0.1:{cls.shards['s0'].port}", timeout=10)
            cls.features = client.server_info().schema.features
            client.close()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for shard in cls.shards.values():
            shard.server.stop()
        cls.nats.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def wait_owned(cls, timeout=60):
        """Until no partition is moving, and each shard serves: every user answers. Then a
        few map polls more (100 ms each): a shard may serve a moved partition's reads from its
        last state until it has read the new map (README, "Fencing")."""
        done = ctl(cls.nats.url(), "wait", f"--wait_seconds={timeout}")
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.time() + timeout
        for shard in cls.shards.values():
            client = TailorClient(f"127.0.0.1:{shard.port}", timeout=10, route_to_owner=False)
            for u in range(USERS):
                while True:
                    try:
                        client.get_user(f"user-{u}")
                    except TailorError as e:
                        if e.code.name == "UNAVAILABLE" and time.time() < deadline:
                            time.sleep(0.1)
                            continue
                    break
            client.close()
        time.sleep(0.5)

    def check_everything(self, acked, port):
        """Every user's export through `port` holds exactly their acked events."""
        client = TailorClient(f"127.0.0.1:{port}", timeout=10, route_to_owner=False)
        try:
            for user, events in acked.items():
                if not events:
                    continue
                exported = client.export_user(user)
                stored = [m.feedback.event.event_id for m in exported if m.HasField("feedback")]
                self.assertEqual(len(stored), len(set(stored)), f"{user}: applied twice")
                self.assertTrue(events <= set(stored), f"{user}: lost {events - set(stored)}")
        finally:
            client.close()

    def forwarded(self):
        """Calls forwarded so far, summed over the shards."""
        total = 0.0
        for shard in self.shards.values():
            text = http_get(f"http://127.0.0.1:{shard.server.metrics_port}/metrics")
            total += sum(float(v) for v in
                         re.findall(r"^tailor_cluster_forwarded_total\{[^}]*\} (\S+)", text, re.M))
        return total

    def test_clients_route_by_the_map(self):
        """Runs first (alphabetically), on the three fresh shards."""
        s1 = self.shards["s1"]
        users = [f"route-{u}" for u in range(24)]
        rng = random.Random(5)

        def candidate(cid):
            return (cid, [f.mean + f.sd * rng.gauss(0, 1) for f in self.features])

        def drive(client, tag):
            for u in users:
                ack = client.feedback(f"{tag}-{u}", u, candidate("a"), candidate("b"))
                self.assertEqual(ack.outcome, "applied")
                client.rank(u, [candidate("a"), candidate("b")])
                self.assertGreater(client.get_user(u).feedback_count, 0)

        # A client without the map, through s1: calls for users s1 does not own are forwarded.
        plain = TailorClient(f"127.0.0.1:{s1.port}", timeout=10, route_to_owner=False)
        before = self.forwarded()
        drive(plain, "plain")
        self.assertGreater(self.forwarded() - before, len(users))  # 3 calls a user, 2/3 remote
        plain.close()

        # The Python client reads the map and calls each owner directly: nothing forwarded.
        routed = TailorClient(f"127.0.0.1:{s1.port}", timeout=10)
        before = self.forwarded()
        drive(routed, "routed")
        self.assertEqual(self.forwarded(), before)
        owners = {routed.address_for(u) for u in users}
        self.assertEqual(owners, {f"127.0.0.1:{s.port}" for s in self.shards.values()})

        # tailorctl (the C++ client) agrees on every owner and calls it directly.
        before = self.forwarded()
        for u in users[:6]:
            route = subprocess.run([TAILORCTL, f"--target=127.0.0.1:{s1.port}", "route", u],
                                   capture_output=True, text=True, timeout=60)
            self.assertEqual(route.stdout.strip(), routed.address_for(u), route.stderr)
            got = subprocess.run([TAILORCTL, f"--target=127.0.0.1:{s1.port}", "user", "get", u],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(got.returncode, 0, got.stderr)
        # A feedback stream of many users: one stream per owner.
        events = os.path.join(self.tmp, "route-events.jsonl")
        with open(events, "w") as f:
            for u in users:
                a, b = candidate("a"), candidate("b")
                f.write(json.dumps({"event_id": f"ctl-{u}", "user_id": u,
                                    "chosen": {"id": a[0], "features": a[1]},
                                    "rejected": {"id": b[0], "features": b[1]}}) + "\n")
        streamed = subprocess.run([TAILORCTL, f"--target=127.0.0.1:{s1.port}", "feedback", events],
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(streamed.returncode, 0, streamed.stderr)
        self.assertEqual(self.forwarded(), before)
        # The Python client splits a lazy stream of many users by owner as it reads it.
        def lazy_events():
            for u in users:
                a, b = candidate("a"), candidate("b")
                yield tailor_pb2.FeedbackEvent(
                    event_id=f"py-stream-{u}", user_id=u,
                    chosen=tailor_pb2.Candidate(id=a[0], features=a[1]),
                    rejected=tailor_pb2.Candidate(id=b[0], features=b[1]))
        acks = list(routed.stream_feedback(lazy_events()))
        self.assertEqual([a.event_id for a in acks], [f"py-stream-{u}" for u in users])
        self.assertTrue(all(a.outcome == "applied" for a in acks), acks)
        self.assertEqual(self.forwarded(), before)
        for u in users:
            self.assertEqual(routed.get_user(u).feedback_count, 4)
        routed.close()

        # nginx configured from the map sends calls carrying x-tailor-partition to the owner.
        made = ctl(self.nats.url(), "router-config", "--format=nginx",
                   f"--listen=127.0.0.1:{free_port()}")
        self.assertEqual(made.returncode, 0, made.stderr)
        port = int(re.search(r"listen 127\.0\.0\.1:(\d+) http2;", made.stdout).group(1))
        nginx = start_router(os.path.join(self.tmp, "router"), made.stdout, port)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = tailor_pb2_grpc.TailorStub(channel)
            before = self.forwarded()
            for u in users:
                header = ((PARTITION_HEADER, str(partition_of(u, PARTITIONS))),)
                profile = stub.GetUser(tailor_pb2.GetUserRequest(user_id=u), timeout=10,
                                       metadata=header)
                self.assertEqual(profile.feedback_count, 4)
            self.assertEqual(self.forwarded(), before)
            # Without the header, any shard answers (forwarding).
            for u in users:
                self.assertEqual(stub.GetUser(tailor_pb2.GetUserRequest(user_id=u),
                                              timeout=10).feedback_count, 4)
            channel.close()
        finally:
            nginx.terminate()
            nginx.wait(timeout=15)

    def test_cluster(self):
        url = self.nats.url()
        writer = Writer([s.port for s in self.shards.values()], self.features)
        writer.start()
        try:
            time.sleep(2)
            # 1. A NATS node dies (kill -9): writes go on.
            before = sum(len(e) for e in writer.snapshot().values())
            self.nats.kill(2)
            # A new stream leader is elected within seconds (slower under the sanitizers and
            # a loaded machine): at least 20 more events must be acked within 60 s.
            killed = time.time()
            after = before
            while after <= before + 20 and time.time() - killed < 60:
                time.sleep(1)
                after = sum(len(e) for e in writer.snapshot().values())
            self.assertTrue(writer.is_alive(), writer.errors[-5:])
            self.assertGreater(after, before + 20,
                               f"writes stopped with one NATS node down: {writer.errors[-5:]}")
            sys.stderr.write(f"20 more events acked {time.time() - killed:.1f} s after the kill\n")
            time.sleep(max(0.0, 12 - (time.time() - killed)))  # writes go on meanwhile
            self.check_everything(writer.snapshot(), self.shards["s0"].port)

            # 2. A shard loses its disk and rebuilds from the log.
            s1 = self.shards["s1"]
            writer.use_ports([self.shards["s0"].port, self.shards["s2"].port])
            s1.stop()
            shutil.rmtree(s1.dir)
            started = time.time()
            self.shards["s1"] = Shard(self.tmp, "s1", url, port=s1.port)
            sys.stderr.write(f"s1 rebuilt from the log and serving in {time.time() - started:.1f} s\n")
            self.wait_owned()
            writer.use_ports([s.port for s in self.shards.values()])
            self.check_everything(writer.snapshot(), self.shards["s1"].port)

            # 3. A fourth shard joins; a quarter of the partitions move to it under traffic.
            self.shards["s3"] = Shard(self.tmp, "s3", url)
            done = ctl(url, "add-shard", "s3")
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertIn(f"{PARTITIONS // 4} partitions moving", done.stdout)
            self.wait_owned()
            writer.use_ports([s.port for s in self.shards.values()])
            time.sleep(1)
            status = ctl(url, "status").stdout
            self.assertRegex(status, r"s3\s+\S+\s+4\s+0", status)
            self.check_everything(writer.snapshot(), self.shards["s3"].port)

            # 4. s0 is drained under traffic, then removed.
            writer.use_ports([self.shards[n].port for n in ("s1", "s2", "s3")])
            done = ctl(url, "drain-shard", "s0")
            self.assertEqual(done.returncode, 0, done.stderr)
            self.wait_owned()
            done = ctl(url, "remove-shard", "s0")
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            self.shards.pop("s0").stop()
        finally:
            writer.stop_event.set()
            writer.join(timeout=60)
        acked = writer.snapshot()
        for shard in self.shards.values():
            self.check_everything(acked, shard.port)
        self.assertGreater(sum(len(e) for e in acked.values()), 200)

        # The cluster metrics: every partition owned once across the shards, and every series
        # the dashboard's cluster row reads is exported.
        # Each shard borrows the others' established users as cold-start neighbours.
        owned, exported = 0, set()
        for shard in self.shards.values():
            text = http_get(f"http://127.0.0.1:{shard.server.metrics_port}/metrics")
            exported |= set(re.findall(r"^(tailor_cluster_\w+)", text, re.M))
            owned += int(float(re.search(r"^tailor_cluster_partitions_owned (\S+)", text,
                                         re.M).group(1)))
            borrowed = float(re.search(r"^tailor_cluster_borrowed_reference_users (\S+)", text,
                                       re.M).group(1))
            self.assertGreater(borrowed, 0, shard.name)
        self.assertEqual(owned, PARTITIONS)
        self.assertIn("tailor_cluster_borrowed_calibration_users", exported)
        for expr in dashboard_exprs(cluster=True):
            for name in re.findall(r"tailor_cluster_\w+", expr):
                self.assertIn(name, exported, expr)

        # 6. DeleteUser through a shard that may not own the user.
        client = TailorClient(f"127.0.0.1:{self.shards['s1'].port}", timeout=10,
                              route_to_owner=False)
        deleted = client.delete_user("user-7")
        self.assertTrue(deleted.existed)
        self.assertEqual(deleted.feedback_events_deleted, len(acked["user-7"]))
        client.close()
        for shard in self.shards.values():
            c = TailorClient(f"127.0.0.1:{shard.port}", timeout=10, route_to_owner=False)
            with self.assertRaises(TailorError) as gone:
                c.get_user("user-7")
            self.assertEqual(gone.exception.code.name, "NOT_FOUND")
            c.close()


if __name__ == "__main__":
    unittest.main()

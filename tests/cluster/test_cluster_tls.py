"""Cluster mode over TLS: shards that serve mutual TLS forward calls to each other over TLS,
verifying the owner's certificate against --cluster_tls_ca_file and presenting their own; and
they, and tailorctl, reach NATS over mutual TLS too. A JetStream nats-server (Debian's) that
requires verified client certificates and three tailord shards on loopback, certificates made
by openssl here: s0 and s1 trust the CA that signed every shard's certificate; s2 is given an
unrelated CA, so it cannot verify the others and its forwarded calls fail, while the calls it
serves itself, and the calls the others forward to it, succeed."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "client", "python", "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "deploy"))
sys.path.insert(0, os.path.join(ROOT, "tests", "metrics"))
from tailor_client import TailorClient, TailorError  # noqa: E402
from test_client import TailordServer  # noqa: E402
from test_metrics import http_get  # noqa: E402
from test_scaleout import free_port, wait_for_port  # noqa: E402

TAILORCTL = os.environ.get("TAILORCTL_BINARY", os.path.join(ROOT, "build", "bin", "tailorctl"))
PARTITIONS = 12
USERS = [f"tls-user-{u}" for u in range(24)]

# A CA, an unrelated CA, one certificate for every shard (127.0.0.1; no extended key usage, so
# it serves as the shards' client certificate too) and one for the client.
# JetStream on loopback, TLS only, client certificates required and verified.
NATS_CONFIG = """
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{dir}/nats" }}
tls {{
  cert_file: "{dir}/shard.pem"
  key_file: "{dir}/shard.key"
  ca_file: "{dir}/ca.pem"
  verify: true
}}
"""

CERTIFICATES = """set -e
key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
for ca in ca other; do openssl req -x509 $key -keyout $ca.key -out $ca.pem -days 1 -subj /CN=$ca; done
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san
for who in shard client; do
  openssl req $key -keyout $who.key -out $who.csr -subj /CN=$who
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile san \
      -out $who.pem
done
"""


def read(path):
    with open(path, "rb") as f:
        return f.read()


class ClusterTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tailor-cluster-tls-")
        cls.nats = None
        cls.shards = {}
        try:
            subprocess.run(["bash", "-c", CERTIFICATES], cwd=cls.tmp, check=True,
                           capture_output=True)
            port = free_port()
            config = os.path.join(cls.tmp, "nats.conf")
            with open(config, "w") as f:
                f.write(NATS_CONFIG.format(port=port, dir=cls.tmp))
            cls.nats_log = open(os.path.join(cls.tmp, "nats.log"), "w")
            cls.nats = subprocess.Popen(["nats-server", "-c", config], stdout=cls.nats_log,
                                        stderr=cls.nats_log)
            wait_for_port(port)
            cls.url = f"nats://127.0.0.1:{port}"
            cls.nats_tls = [f"--{{}}ca_file={cls.tmp}/ca.pem",
                            f"--{{}}cert_file={cls.tmp}/shard.pem",
                            f"--{{}}key_file={cls.tmp}/shard.key", "--{}tls_hostname=localhost"]
            for name, shards_ca in (("s0", "ca"), ("s1", "ca"), ("s2", "other")):
                cls.shards[name] = cls.start_shard(name, shards_ca)
            for args in (["rebalance"], ["wait", "--wait_seconds=60"]):
                done = cls.ctl(*args)
                assert done.returncode == 0, done.stdout + done.stderr
            cls.wait_for_the_map()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_shard(cls, name, shards_ca):
        port = free_port()
        directory = os.path.join(cls.tmp, name)
        os.makedirs(directory)
        return TailordServer(
            (f"--shard_name={name}", f"--cluster_nats={cls.url}", "--cluster_replicas=1",
             f"--cluster_partitions={PARTITIONS}", f"--cluster_advertise=127.0.0.1:{port}",
             f"--tls_cert_file={cls.tmp}/shard.pem", f"--tls_key_file={cls.tmp}/shard.key",
             f"--tls_client_ca_file={cls.tmp}/ca.pem",
             f"--cluster_tls_ca_file={cls.tmp}/{shards_ca}.pem",
             *(flag.format("cluster_nats_") for flag in cls.nats_tls)),
            data_dir=directory, port=port, start_timeout=120)

    @classmethod
    def wait_for_the_map(cls, timeout=60):
        """Until every shard has read the map with every partition owned and every shard's
        address (shard addresses are read every 2 s)."""
        deadline = time.time() + timeout
        for name in cls.shards:
            client = cls.tls_client(name)
            try:
                while True:
                    c = client.server_info().cluster
                    if (len(c.shards) == len(cls.shards) and len(c.owners) == PARTITIONS
                            and all(o >= 0 for o in c.owners)):
                        break
                    assert time.time() < deadline, f"{name} has not read the map: {c}"
                    time.sleep(0.2)
            finally:
                client.close()

    @classmethod
    def ctl(cls, *args, tls=True):
        return subprocess.run([TAILORCTL, "cluster", *args, f"--nats={cls.url}",
                               f"--partitions={PARTITIONS}",
                               *(flag.format("nats_") for flag in cls.nats_tls if tls)],
                              capture_output=True, text=True, timeout=120)

    @classmethod
    def tearDownClass(cls):
        for shard in cls.shards.values():
            shard.stop()
        if cls.nats is not None:
            cls.nats.terminate()
            cls.nats.wait(timeout=30)
            cls.nats_log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tls_client(cls, shard, route_to_owner=False):
        """A client of `shard` over mutual TLS, with the client certificate."""
        return TailorClient(f"127.0.0.1:{cls.shards[shard].port}", timeout=10,
                            root_ca=read(f"{cls.tmp}/ca.pem"),
                            client_cert=read(f"{cls.tmp}/client.pem"),
                            client_key=read(f"{cls.tmp}/client.key"),
                            route_to_owner=route_to_owner)

    def client(self, shard, route_to_owner=False):
        client = self.tls_client(shard, route_to_owner)
        self.addCleanup(client.close)
        return client

    def forwarded(self, shard):
        text = http_get(f"http://127.0.0.1:{self.shards[shard].metrics_port}/metrics")
        return sum(float(v) for v in
                   re.findall(r"^tailor_cluster_forwarded_total\{[^}]*\} (\S+)", text, re.M))

    @staticmethod
    def candidate(cid, k):
        return (cid, [1.0 if i == k else 0.0 for i in range(10)])

    def test_shards_forward_to_each_other_over_mutual_tls(self):
        via_s0 = self.client("s0")
        routed = self.client("s0", route_to_owner=True)
        owners = {u: routed.address_for(u) for u in USERS}
        self.assertEqual(set(owners.values()),
                         {f"127.0.0.1:{s.port}" for s in self.shards.values()})
        before = self.forwarded("s0")
        for u in USERS:
            ack = via_s0.feedback(f"{u}-e0", u, self.candidate("a", 0), self.candidate("b", 1))
            self.assertEqual(ack.outcome, "applied", u)
        # Every user s0 does not own went over TLS to its owner (s2 included).
        s0_address = f"127.0.0.1:{self.shards['s0'].port}"
        remote = sum(owner != s0_address for owner in owners.values())
        self.assertGreater(remote, 0)
        self.assertEqual(self.forwarded("s0") - before, remote)
        # A client that reads the map reaches each owner directly, over TLS as well.
        for u in USERS:
            self.assertEqual(routed.get_user(u).feedback_count, 1)

    def test_nats_is_reached_over_mutual_tls_only(self):
        status = self.ctl("status", "--json")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertIn('"s2"', status.stdout)
        plaintext = self.ctl("status", tls=False)
        self.assertNotEqual(plaintext.returncode, 0)
        # A client certificate the server's CA did not sign, or a host name the server's
        # certificate does not name, is refused too.
        for wrong in ([f"--nats_ca_file={self.tmp}/ca.pem"],
                      [f"--nats_ca_file={self.tmp}/ca.pem", f"--nats_cert_file={self.tmp}/client.pem",
                       f"--nats_key_file={self.tmp}/client.key", "--nats_tls_hostname=elsewhere"]):
            refused = subprocess.run([TAILORCTL, "cluster", "status", f"--nats={self.url}", *wrong],
                                     capture_output=True, text=True, timeout=120)
            self.assertNotEqual(refused.returncode, 0, wrong)

    def test_a_shard_that_cannot_verify_the_others_does_not_forward_to_them(self):
        via_s2 = self.client("s2")
        s2_address = f"127.0.0.1:{self.shards['s2'].port}"
        routed = self.client("s2", route_to_owner=True)
        users = [f"tls-s2-user-{u}" for u in range(24)]
        mine = [u for u in users if routed.address_for(u) == s2_address]
        others = [u for u in users if routed.address_for(u) != s2_address]
        self.assertTrue(mine and others)
        for u in mine:
            ack = via_s2.feedback(f"{u}-s2", u, self.candidate("a", 2), self.candidate("b", 3))
            self.assertEqual(ack.outcome, "applied")
        for u in others:
            with self.assertRaises(TailorError) as caught:
                via_s2.feedback(f"{u}-s2", u, self.candidate("a", 2), self.candidate("b", 3))
            self.assertEqual(caught.exception.code.name, "UNAVAILABLE", u)
            # Nothing was written: the owner (asked directly) never saw the user.
            with self.assertRaises(TailorError) as unknown:
                routed.get_user(u)
            self.assertEqual(unknown.exception.code.name, "NOT_FOUND", u)


if __name__ == "__main__":
    unittest.main()

"""Per-tenant request quotas end to end: a real tailord with a tokens file and a quotas file
(--tenant_quotas_file). A tenant over its quota gets RESOURCE_EXHAUSTED naming the tenant and
the quota, and nothing of the refused call is stored; a stream is acked up to its quota and
then ends RESOURCE_EXHAUSTED; other tenants are untouched; tailor_quota_refusals_total counts
the refusals by tenant (promtool accepts the exposition); SIGHUP re-reads the quotas; streams cut
while their clients keep sending leave the server up."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "client", "python", "tests"))
from tailor_client import TailorClient, TailorError, tailor_pb2  # noqa: E402
from test_client import TailordServer  # noqa: E402
from test_metrics import http_get  # noqa: E402

ACME = "acme-token-0000000001"
GLOBEX = "globex-token-00000001"
OPS = "ops-admin-token-00001"
# acme: 5 requests at once, then one every 1000 s (none during the test).
QUOTAS = "acme 0.001 5\n"


class QuotaTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tailor-quota-")
        self.quotas = os.path.join(self.dir, "quotas")
        with open(os.path.join(self.dir, "tokens"), "w") as f:
            f.write(f"acme {ACME}\nglobex {GLOBEX}\nops {OPS} admin\n")
        with open(self.quotas, "w") as f:
            f.write(QUOTAS)
        self.server = TailordServer((f"--auth_tokens_file={self.dir}/tokens",
                                     f"--tenant_quotas_file={self.quotas}"), data_dir=self.dir)
        target = f"127.0.0.1:{self.server.port}"
        # route_to_owner=False: no map reads, so every call below is one the test counts.
        self.acme = TailorClient(target, token=ACME, route_to_owner=False)
        self.globex = TailorClient(target, token=GLOBEX, route_to_owner=False)
        self.ops = TailorClient(target, token=OPS, route_to_owner=False)
        self.schema = self.ops.server_info().schema.features

    def tearDown(self):
        for c in (self.acme, self.globex, self.ops):
            c.close()
        self.assertEqual(self.server.stop(), 0)

    def candidate(self, cid, sign):
        return (cid, [f.mean + sign * f.sd for f in self.schema])

    def event(self, event_id, user):
        a, b = self.candidate("a", 1), self.candidate("b", -1)
        return tailor_pb2.FeedbackEvent(
            event_id=event_id, user_id=user,
            chosen=tailor_pb2.Candidate(id=a[0], features=a[1]),
            rejected=tailor_pb2.Candidate(id=b[0], features=b[1]))

    def stored_events(self):
        return self.ops.server_info().feedback_events

    def refusals(self, tenant):
        body = http_get(f"http://127.0.0.1:{self.server.metrics_port}/metrics")
        found = re.search(rf'^tailor_quota_refusals_total{{tenant="{tenant}"}} (\S+)$', body, re.M)
        return float(found.group(1)) if found else 0.0

    def test_calls_beyond_the_quota_are_refused_and_store_nothing(self):
        for i in range(5):  # the burst
            self.acme.feedback(f"e{i}", "bob", self.candidate("a", 1), self.candidate("b", -1))
        with self.assertRaises(TailorError) as refused:
            self.acme.feedback("e5", "bob", self.candidate("a", 1), self.candidate("b", -1))
        self.assertEqual(refused.exception.code.name, "RESOURCE_EXHAUSTED")
        self.assertIn("tenant 'acme'", refused.exception.message)
        self.assertIn("0.001/s (burst 5)", refused.exception.message)
        with self.assertRaises(TailorError):  # reads count too
            self.acme.rank("bob", [self.candidate("a", 1), self.candidate("b", -1)])
        self.assertEqual(self.stored_events(), 5)
        # Another tenant (no quota of its own, no default) is untouched.
        for i in range(20):
            self.globex.feedback(f"g{i}", "bob", self.candidate("a", 1), self.candidate("b", -1))
        self.assertEqual(self.stored_events(), 25)
        self.assertEqual(self.refusals("acme"), 2)
        self.assertEqual(self.refusals("globex"), 0)
        body = http_get(f"http://127.0.0.1:{self.server.metrics_port}/metrics")
        check = subprocess.run(["promtool", "check", "metrics"], input=body,
                               capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_a_stream_is_acked_up_to_the_quota_then_ends(self):
        # Opening the stream takes one request; 4 of the 8 events fit.
        acks = []
        with self.assertRaises(TailorError) as ended:
            for ack in self.acme.stream_feedback([self.event(f"s{i}", "bob") for i in range(8)]):
                acks.append(ack)
        self.assertEqual(ended.exception.code.name, "RESOURCE_EXHAUSTED")
        self.assertEqual([a.event_id for a in acks], ["s0", "s1", "s2", "s3"])
        self.assertTrue(all(a.outcome == "applied" for a in acks))
        self.assertEqual(self.stored_events(), 4)
        # The events read past the quota are counted (the rest were never read).
        self.assertGreaterEqual(self.refusals("acme"), 1)

    def test_streams_cut_while_their_clients_keep_sending_leave_the_server_up(self):
        # Found by CI: a stream cut by its quota while an event was still being read posted
        # work for it after gRPC had deleted it (a use after free, SIGSEGV or an ASan report).
        # Quota refilling at 300/s, so streams get some events in and are then cut mid-flow.
        with open(self.quotas, "w") as f:
            f.write("acme 300 5\n")
        self.server.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        cut = []

        def streams(t):
            for r in range(10):
                try:
                    for _ in self.acme.stream_feedback(
                            [self.event(f"e{i}", f"u{t}-{r}") for i in range(300)]):
                        pass
                except TailorError as e:
                    cut.append(e.code.name)

        threads = [threading.Thread(target=streams, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertIn("RESOURCE_EXHAUSTED", cut)
        self.assertIsNone(self.server.proc.poll(), "".join(self.server.log))
        self.assertGreater(self.stored_events(), 0)

    def test_sighup_rereads_the_quotas(self):
        for _ in range(5):
            try:
                self.acme.get_user("nobody")
            except TailorError as e:
                self.assertEqual(e.code.name, "NOT_FOUND")
        with self.assertRaises(TailorError) as refused:
            self.acme.get_user("nobody")
        self.assertEqual(refused.exception.code.name, "RESOURCE_EXHAUSTED")
        # A bad file is refused and the quota in force stays.
        with open(self.quotas, "w") as f:
            f.write("acme fast\n")
        self.server.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        with self.assertRaises(TailorError):
            self.acme.get_user("nobody")
        # A higher rate lets calls through again (the bucket refills at the new rate).
        with open(self.quotas, "w") as f:
            f.write("acme 1000 1000\n")
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while True:
            try:
                self.acme.get_user("nobody")
            except TailorError as e:
                if e.code.name == "NOT_FOUND":
                    break
                self.assertLess(time.time(), deadline, "the new quota was not applied")
                time.sleep(0.1)
        deadline = time.time() + 10  # the server's log is read by another thread
        while "tokens and quotas reloaded" not in "".join(self.server.log):
            self.assertLess(time.time(), deadline, "".join(self.server.log))
            time.sleep(0.05)
        self.assertIn("SIGHUP: quotas kept", "".join(self.server.log))


if __name__ == "__main__":
    unittest.main()

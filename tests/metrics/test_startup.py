"""Startup is observable: while tailord loads a data directory, /metrics already answers
(tailor_starting 1, tailor_startup_users_loaded rising), gRPC health says NOT_SERVING and calls
are refused UNAVAILABLE ("starting"); once loaded, health says SERVING. The data directory
holds 40,000 users with one pair each, whose states are rebuilt from history at startup (the
slow path), so the load lasts long enough to be watched."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

HERE = os.path.dirname(__file__)
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
from test_metrics import http_get  # noqa: E402
from tailor_client import TailorClient, TailorError, tailor_pb2  # noqa: E402
from test_client import TAILORD, TailordServer  # noqa: E402
USERS = 40000
# grpc.health.v1.HealthCheckResponse{status}, as bytes (Debian has no grpc_health module).
SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"


class StartupTest(unittest.TestCase):
    def test_metrics_and_health_answer_while_users_load(self):
        tmp = tempfile.mkdtemp(prefix="tailor-startup-")
        try:
            writer = TailordServer(["--refresh_ms=0"], data_dir=tmp)
            client = TailorClient(f"127.0.0.1:{writer.port}", timeout=60)
            d = len(client.server_info().schema.features)
            events = (tailor_pb2.FeedbackEvent(
                event_id=f"e{u}", user_id=f"u{u}",
                chosen=tailor_pb2.Candidate(id="a", features=[1.0] * d),
                rejected=tailor_pb2.Candidate(id="b", features=[0.0] * d))
                for u in range(USERS))
            self.assertEqual(sum(1 for _ in client.stream_feedback(events)), USERS)
            client.close()
            self.assertEqual(writer.stop(), 0)

            proc = subprocess.Popen(
                [TAILORD, f"--data_dir={tmp}/db", "--listen=127.0.0.1:0",
                 "--metrics_listen=127.0.0.1:0", "--refresh_ms=0"],
                stderr=subprocess.PIPE, text=True)
            try:
                grpc_port = metrics_port = None
                for line in proc.stderr:
                    match = re.search(r"loading users grpc_port=(\d+) metrics_port=(\d+)", line)
                    if match:
                        grpc_port, metrics_port = int(match.group(1)), int(match.group(2))
                        break
                self.assertIsNotNone(grpc_port, "no 'loading users' line")
                channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
                check = channel.unary_unary("/grpc.health.v1.Health/Check")
                loading = TailorClient(f"127.0.0.1:{grpc_port}", timeout=5)

                # While loading: the metrics answer, health says NOT_SERVING, calls are refused.
                body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
                self.assertRegex(body, r"(?m)^tailor_starting 1$")
                self.assertIn("tailor_startup_users_loaded", body)
                self.assertEqual(check(b"", timeout=5), NOT_SERVING)
                with self.assertRaises(TailorError) as refused:
                    loading.rank("u1", [("a", [1.0] * d), ("b", [0.0] * d)])
                self.assertEqual(refused.exception.code, grpc.StatusCode.UNAVAILABLE)
                self.assertIn("starting", str(refused.exception))

                # Then it serves.
                for line in proc.stderr:
                    if "serving grpc_port=" in line:
                        break
                self.assertEqual(check(b"", timeout=5), SERVING)
                body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
                self.assertRegex(body, r"(?m)^tailor_starting 0$")
                self.assertRegex(body, rf"(?m)^tailor_startup_users_loaded {USERS}$")
                self.assertEqual(len(loading.rank("u1", [("a", [1.0] * d),
                                                         ("b", [0.0] * d)]).ranked), 2)
                loading.close()
                channel.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                proc.stderr.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()

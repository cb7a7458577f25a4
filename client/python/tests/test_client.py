"""The Python client against a real tailord (started here on port 0 with a temp data dir)."""
import collections
import os
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tailor_client import (TailorClient, TailorError, partition_of, storage_id_of,  # noqa: E402
                           tailor_pb2)

TAILORD = os.environ.get("TAILORD_BINARY", "build/bin/tailord")
D = 10


def expert(cid, k, info, level=2.0):
    """A candidate scoring high on reward model k and average elsewhere (raw units)."""
    return (cid, [f.mean + f.sd * (level if i == k else 0.0) for i, f in enumerate(info)])


class TailordServer:
    """A tailord child process. With `data_dir` the caller owns the directory (a restart on
    the same directory and port is a new TailordServer); otherwise a temp one is removed on
    stop."""

    def __init__(self, extra_args=(), data_dir=None, port=0, start_timeout=30):
        self.owned = data_dir is None
        self.dir = tempfile.mkdtemp(prefix="tailor-py-") if data_dir is None else data_dir
        self.proc = subprocess.Popen(
            [TAILORD, f"--data_dir={self.dir}/db", f"--listen=127.0.0.1:{port}",
             "--metrics_listen=127.0.0.1:0", "--shutdown_grace_ms=200", *extra_args],
            stderr=subprocess.PIPE, text=True)
        deadline = time.time() + start_timeout
        self.port = None
        started = []
        while time.time() < deadline and self.port is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            started.append(line)
            match = re.search(r"serving grpc_port=(\d+) metrics_port=(\d+)", line)
            if match:
                self.port, self.metrics_port = int(match.group(1)), int(match.group(2))
        if self.port is None:
            # Never leave it running: it would hold the test's output pipe open (ctest waits
            # for that pipe) and its port.
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise RuntimeError(f"tailord did not start within {start_timeout} s; its log:\n"
                               + "".join(started[-30:]))
        # Keep reading the log, so a chatty server never blocks on a full pipe; its tail is
        # printed if the server exits with an error (a sanitizer report, a crash).
        self.log = collections.deque(maxlen=200)
        self.log_reader = threading.Thread(target=lambda: self.log.extend(self.proc.stderr),
                                           daemon=True)
        self.log_reader.start()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log_reader.join(timeout=5)
        self.proc.stderr.close()
        if code != 0:
            sys.stderr.write(f"tailord on port {self.port} exited with {code}; its log ends:\n"
                             + "".join(self.log))
        if self.owned:
            shutil.rmtree(self.dir, ignore_errors=True)
        return code


class PartitionHashTest(unittest.TestCase):
    def test_pinned_values_match_the_servers(self):
        # The same numbers are asserted for proto/partition_routing.h by
        # tests/cluster/router_config_test.cc.
        self.assertEqual(partition_of("alice", 64), 1)
        self.assertEqual(partition_of("acme/alice", 64), 37)
        self.assertEqual(partition_of("user-12345", 64), 57)
        self.assertEqual(partition_of("\u00e9t\u00e9", 1000), 677)
        self.assertEqual(storage_id_of("acme", "alice"), "acme/alice")
        self.assertEqual(storage_id_of("", "alice"), "alice")


class TailorClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = TailordServer()
        cls.client = TailorClient(f"127.0.0.1:{cls.server.port}")
        cls.info = cls.client.server_info().schema.features

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        assert cls.server.stop() == 0

    def test_rank_unknown_user_from_population(self):
        result = self.client.rank("py-new", [expert("a", 0, self.info), expert("b", 1, self.info)])
        self.assertEqual(result.knowledge_source, "population")
        self.assertEqual(len(result.ranked), 2)
        self.assertAlmostEqual(sum(r.probability_best for r in result.ranked), 1.0, places=6)

    def test_feedback_learns_and_is_idempotent(self):
        for i in range(10):
            ack = self.client.feedback(f"py-{i}", "py-user", expert("x", 4, self.info),
                                       expert(f"y{i}", i % 3, self.info))
            self.assertEqual(ack.outcome, "applied")
        again = self.client.feedback("py-0", "py-user", expert("x", 4, self.info),
                                     expert("y0", 0, self.info))
        self.assertEqual(again.outcome, "duplicate")
        self.assertEqual(again.user_feedback_count, 1)
        ranked = self.client.rank("py-user", [expert("zero", 0, self.info),
                                              expert("four", 4, self.info)])
        self.assertEqual(ranked.ranked[0].id, "four")
        self.assertEqual(ranked.user_feedback_count, 10)
        self.assertEqual(self.client.get_user("py-user").feedback_count, 10)

    def test_stream_feedback_acks_in_order_and_rejects_bad_events(self):
        events = []
        for i in range(20):
            chosen, rejected = expert("a", 2, self.info), expert("b", 5, self.info)
            events.append(tailor_pb2.FeedbackEvent(
                event_id=f"s{i}", user_id="" if i == 3 else "py-stream",
                chosen=tailor_pb2.Candidate(id=chosen[0], features=chosen[1]),
                rejected=tailor_pb2.Candidate(id=rejected[0], features=rejected[1])))
        acks = list(self.client.stream_feedback(events))
        self.assertEqual([a.event_id for a in acks], [f"s{i}" for i in range(20)])
        self.assertEqual(acks[3].outcome, "rejected")
        self.assertIn("user_id: must not be empty", acks[3].error)
        self.assertEqual(sum(a.outcome == "applied" for a in acks), 19)

    def test_invalid_input_raises_with_field_and_rule(self):
        with self.assertRaises(TailorError) as caught:
            self.client.rank("py-user", [("a", [1.0, 2.0])])
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("candidates[0].features: has 2 values", caught.exception.message)

    def test_suggest_export_delete(self):
        cands = [expert("a", 0, self.info), expert("b", 1, self.info), expert("c", 2, self.info)]
        pair = self.client.suggest("py-life", cands)
        self.assertNotEqual(pair.first_id, pair.second_id)
        self.client.feedback("l1", "py-life", cands[0], cands[1])
        items = self.client.export_user("py-life")
        self.assertTrue(items[0].HasField("profile"))
        self.assertEqual(items[1].feedback.event.event_id, "l1")
        self.assertTrue(self.client.delete_user("py-life").existed)
        with self.assertRaises(TailorError) as caught:
            self.client.get_user("py-life")
        self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_serving_loop_example_runs_and_learns(self):
        example = os.path.join(os.path.dirname(__file__), "..", "examples", "serving_loop.py")
        out = subprocess.run([sys.executable, example, f"127.0.0.1:{self.server.port}", "40"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        match = re.search(r"(\d+)% of the first 10 turns, (\d+)% of the last 10", out.stdout)
        self.assertIsNotNone(match, out.stdout)
        self.assertGreaterEqual(int(match.group(2)), 50)


if __name__ == "__main__":
    unittest.main()

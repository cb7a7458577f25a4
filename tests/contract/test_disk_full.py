"""Disk full: tailord's data directory on a small tmpfs (mounted by the test in a private mount
namespace, `unshare -rm`, so no root is needed where user namespaces are allowed). While the
disk is full, feedback fails with RESOURCE_EXHAUSTED naming the cause, reads keep working, and
nothing acked is lost; once space returns, feedback succeeds again without a restart."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "client", "python", "tests"))
from tailor_client import TailorClient, TailorError  # noqa: E402
from test_client import TAILORD, expert  # noqa: E402

import grpc  # noqa: E402

SIZE_MB = 48  # RocksDB preallocates part of it (WAL, info log) at startup


def can_mount_privately():
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c",
                               "d=$(mktemp -d) && mount -t tmpfs -o size=1m t \"$d\""],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@unittest.skipUnless(can_mount_privately(),
                     "cannot mount a tmpfs in a private mount namespace here (unshare -rm)")
class DiskFullTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tailor-diskfull-")
        script = (f'mount -t tmpfs -o size={SIZE_MB}m tailor-full "{self.dir}" && '
                  f'exec "{TAILORD}" --data_dir="{self.dir}/db" --listen=127.0.0.1:0 '
                  f'--metrics_listen=127.0.0.1:0 --shutdown_grace_ms=200 --memtable_mb=8 --min_free_disk_mb=16')
        self.proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", script],
                                     stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.time() + 30
        while time.time() < deadline and port is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            match = re.search(r"serving grpc_port=(\d+)", line)
            if match:
                port = int(match.group(1))
        self.assertIsNotNone(port, "tailord did not start on the tmpfs")
        self.log = []
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
        # The tmpfs is visible only in tailord's mount namespace: reach it through /proc.
        self.mounted = f"/proc/{self.proc.pid}/root{self.dir}"
        self.client = TailorClient(f"127.0.0.1:{port}", timeout=10)
        self.features = self.client.server_info().schema.features

    def tearDown(self):
        self.client.close()
        if self.proc.poll() is not None:
            sys.stderr.write("tailord exited early:\n" + "".join(self.log[-30:]))
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def send(self, user, i):
        return self.client.feedback(f"{user}/{i}", user, expert("a", i % 10, self.features),
                                    expert("b", (i + 1) % 10, self.features))

    def in_namespace(self, command):
        """Runs a shell command in tailord's user and mount namespaces, where the tmpfs is."""
        return subprocess.run(["nsenter", "-t", str(self.proc.pid), "-U", "-m",
                               "--preserve-credentials", "sh", "-c", command],
                              capture_output=True, text=True, timeout=60)

    def fill(self, leave_mb=10):
        """Fills the tmpfs up to `leave_mb` MiB free: below tailord's reserve (16 MiB), but with
        room for the writes made before tailord's next free-space check (once a second)."""
        st = os.statvfs(self.mounted)
        fill_mb = st.f_bavail * st.f_frsize // (1 << 20) - leave_mb
        result = self.in_namespace(
            f'dd if=/dev/zero of="{self.dir}/filler" bs=1M count={fill_mb}')
        self.assertEqual(result.returncode, 0, result.stderr)
        st = os.statvfs(self.mounted)
        self.assertLess(st.f_bavail * st.f_frsize, 16 << 20, "the tmpfs did not fill")

    def free(self):
        result = self.in_namespace(f'rm -f "{self.dir}/filler"')
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_full_disk_refuses_feedback_clearly_keeps_reads_and_recovers(self):
        acked = {}
        for i in range(50):
            self.assertEqual(self.send("early", i).outcome, "applied")
            acked.setdefault("early", 0)
            acked["early"] += 1
        self.fill()
        # Writes now fail, quickly and with the cause; a few may still fit in buffers.
        failures = []
        for i in range(20000):
            try:
                ack = self.send("during", i)
                if ack.outcome == "applied":
                    acked["during"] = acked.get("during", 0) + 1
            except TailorError as e:
                failures.append(e)
                if len(failures) >= 5:
                    break
        self.assertGreaterEqual(len(failures), 5, "feedback kept succeeding on a full disk")
        for e in failures:
            self.assertEqual(e.code, grpc.StatusCode.RESOURCE_EXHAUSTED, e)
            self.assertIn("disk full", str(e))
        # Reads keep working.
        self.assertEqual(self.client.get_user("early").feedback_count, acked["early"])
        ranked = self.client.rank("early", [expert("x", 0, self.features),
                                            expert("y", 1, self.features)])
        self.assertEqual(len(ranked.ranked), 2)
        # Space returns: feedback succeeds again by itself (no restart).
        self.free()
        deadline = time.time() + 60
        recovered = False
        i = 1000
        while time.time() < deadline:
            try:
                if self.send("after", i).outcome == "applied":
                    recovered = True
                    break
            except TailorError as e:
                self.assertEqual(e.code, grpc.StatusCode.RESOURCE_EXHAUSTED, e)
                time.sleep(0.5)
            i += 1
        self.assertTrue(recovered, "feedback did not recover after space returned")
        # Nothing acked was lost.
        for user, count in acked.items():
            self.assertEqual(self.client.get_user(user).feedback_count, count, user)


if __name__ == "__main__":
    unittest.main()

"""Soak test: a bounded run of mixed, realistic traffic against one tailord, sampling what
must not grow without bound, and reporting each quantity's trend.

    scripts/soak.sh [--minutes=10] [--users=3000] [--out=soak.md]

Traffic (four client threads, each its own channel): a ranker (RankResponses for known and
never-seen users, 8 candidates), a feeder (StreamFeedback batches of 200 events across a
growing population of users, each user with a stable taste), a reader (GetUser, ExportUser,
SuggestComparison, GetServerInfo), and an operator (DeleteUser of a random user every second,
a CreateCheckpoint every 60 s, removed again). The server refreshes its knowledge every 5 s
(--refresh_ms).
Every 30 s it samples tailord's RSS and open file descriptors (/proc), the data directory's
size, and the client-side latency of each call kind in that window. The report gives the
samples and, over the second half of the run (after the population has grown in), the slope
of each series per minute with a least-squares fit: a plateau has a slope near zero.
"""
import argparse
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

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
from tailor_client import TailorClient, TailorError, tailor_pb2  # noqa: E402
from tailor.v1 import tailor_pb2_grpc  # noqa: E402  (on the path once tailor_client is imported)

import grpc  # noqa: E402


def start_tailord(binary, data_dir, refresh_ms, extra):
    proc = subprocess.Popen(
        [binary, f"--data_dir={data_dir}", "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
         f"--refresh_ms={refresh_ms}", "--shutdown_grace_ms=500", *extra],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"serving grpc_port=(\d+)", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(match.group(1))
        if not line:
            break
    raise RuntimeError("tailord did not start")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(base, name))
            except OSError:
                pass
    return total


def slope_per_minute(points):
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return 60.0 * sxy / sxx if sxx else float("nan")


class Latencies:
    def __init__(self):
        self.lock = threading.Lock()
        self.window = {}
        self.errors = {}

    def add(self, kind, seconds):
        with self.lock:
            self.window.setdefault(kind, []).append(seconds)

    def error(self, kind, code):
        with self.lock:
            key = f"{kind}:{code.name}"
            self.errors[key] = self.errors.get(key, 0) + 1

    def take(self):
        with self.lock:
            window, self.window = self.window, {}
        out = {}
        for kind, values in window.items():
            values.sort()
            out[kind] = (len(values), values[len(values) // 2], values[int(len(values) * 0.99)])
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=3000, help="population the feeder grows to")
    parser.add_argument("--tailord", default=os.path.join(ROOT, "build", "bin", "tailord"))
    parser.add_argument("--refresh_ms", type=int, default=5000, help="tailord --refresh_ms")
    parser.add_argument("--tailord_flags", default="",
                        help="more tailord flags, space-separated (e.g. '--block_cache_mb=16')")
    parser.add_argument("--out", default="", help="also write the Markdown report here")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="tailor-soak-")
    data_dir = os.path.join(work, "db")
    proc, port = start_tailord(args.tailord, data_dir, args.refresh_ms, args.tailord_flags.split())
    target = f"127.0.0.1:{port}"
    features = TailorClient(target).server_info().schema.features
    d = len(features)
    stop = threading.Event()
    latencies = Latencies()
    tastes = {}
    counts = {}

    def candidate(cid, rng):
        return (cid, [f.mean + f.sd * rng.gauss(0, 1) for f in features])

    def timed(kind, call):
        start = time.perf_counter()
        try:
            result = call()
            latencies.add(kind, time.perf_counter() - start)
            return result
        except TailorError as e:
            if e.code != grpc.StatusCode.NOT_FOUND:
                latencies.error(kind, e.code)
        except grpc.RpcError as e:
            latencies.error(kind, e.code())
        return None

    def ranker():
        rng = random.Random(1)
        client = TailorClient(target, timeout=10)
        while not stop.is_set():
            known = list(tastes)
            user = rng.choice(known) if known and rng.random() < 0.8 else f"new-{rng.random()}"
            timed("rank", lambda: client.rank(user, [candidate(f"c{i}", rng) for i in range(8)]))

    def feeder():
        rng = random.Random(2)
        client = TailorClient(target, timeout=30)
        serial = 0
        while not stop.is_set():
            events = []
            for _ in range(200):
                if len(tastes) < args.users and rng.random() < 0.2:
                    tastes[f"u{len(tastes)}"] = [rng.gauss(0, 1) for _ in range(d)]
                if not tastes:
                    continue
                user = rng.choice(list(tastes))
                a, b = candidate("a", rng), candidate("b", rng)
                w = tastes.get(user) or [0.0] * d
                score = sum(wi * (x - y) / f.sd for wi, x, y, f in zip(w, a[1], b[1], features))
                chosen, rejected = (a, b) if score >= 0 else (b, a)
                serial += 1
                events.append(tailor_pb2.FeedbackEvent(
                    event_id=f"e{serial}", user_id=user,
                    chosen=tailor_pb2.Candidate(id=chosen[0], features=chosen[1]),
                    rejected=tailor_pb2.Candidate(id=rejected[0], features=rejected[1])))
            start = time.perf_counter()
            try:
                acks = list(client.stream_feedback(events))
                latencies.add("stream_batch_200", time.perf_counter() - start)
                for ack, event in zip(acks, events):
                    if ack.outcome == "applied":
                        counts[event.user_id] = counts.get(event.user_id, 0) + 1
            except TailorError as e:
                latencies.error("stream_batch_200", e.code)

    def reader():
        rng = random.Random(3)
        client = TailorClient(target, timeout=10)
        while not stop.is_set():
            known = list(tastes)
            if not known:
                time.sleep(0.1)
                continue
            user = rng.choice(known)
            timed("get_user", lambda: client.get_user(user))
            timed("suggest", lambda: client.suggest(user, [candidate(f"c{i}", rng) for i in range(4)]))
            if rng.random() < 0.1:
                timed("export_user", lambda: client.export_user(user))
            if rng.random() < 0.05:
                timed("server_info", client.server_info)

    def operator():
        rng = random.Random(4)
        client = TailorClient(target, timeout=30)
        admin = tailor_pb2_grpc.TailorAdminStub(grpc.insecure_channel(target))
        last_checkpoint = time.time()
        while not stop.wait(1.0):
            known = list(tastes)
            if known:
                user = rng.choice(known)
                timed("delete_user", lambda: client.delete_user(user))
            if time.time() - last_checkpoint >= 60:
                last_checkpoint = time.time()
                directory = os.path.join(work, f"ckpt-{int(last_checkpoint)}")
                timed("checkpoint", lambda: admin.CreateCheckpoint(
                    tailor_pb2.CreateCheckpointRequest(directory=directory), timeout=60))
                shutil.rmtree(directory, ignore_errors=True)

    threads = [threading.Thread(target=f, daemon=True) for f in (ranker, feeder, reader, operator)]
    started = time.time()
    for t in threads:
        t.start()
    samples = []
    end = started + args.minutes * 60
    while time.time() < end:
        time.sleep(min(30, max(0.0, end - time.time())))
        t = time.time() - started
        sample = {"t": t, "rss": rss_bytes(proc.pid), "fds": len(os.listdir(f"/proc/{proc.pid}/fd")),
                  "disk": dir_bytes(data_dir), "users": len(tastes), "lat": latencies.take()}
        samples.append(sample)
        print(f"{t:6.0f} s  rss {sample['rss'] >> 20} MiB  fds {sample['fds']}  "
              f"disk {sample['disk'] >> 20} MiB  users {sample['users']}", file=sys.stderr)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    shutil.rmtree(work, ignore_errors=True)

    kinds = sorted({k for s in samples for k in s["lat"]})
    lines = [f"Soak: {args.minutes:g} min, --refresh_ms={args.refresh_ms} {args.tailord_flags}, "
             f"population grown to "
             f"{len(tastes)} users, "
             f"tailord exit code {code}.", "",
             "| t (s) | RSS (MiB) | open fds | data dir (MiB) | " +
             " | ".join(f"{k} p50 / p99 (ms), calls" for k in kinds) + " |",
             "|---:|---:|---:|---:|" + "---|" * len(kinds)]
    for s in samples:
        cells = []
        for k in kinds:
            n, p50, p99 = s["lat"].get(k, (0, float("nan"), float("nan")))
            cells.append(f"{p50 * 1e3:.2f} / {p99 * 1e3:.2f}, {n}")
        lines.append(f"| {s['t']:.0f} | {s['rss'] / 2**20:.0f} | {s['fds']} | "
                     f"{s['disk'] / 2**20:.1f} | " + " | ".join(cells) + " |")
    half = [s for s in samples if s["t"] >= args.minutes * 30]
    lines += ["", "Slopes over the second half (least squares, per minute):", ""]
    lines.append(f"- RSS: {slope_per_minute([(s['t'], s['rss'] / 2**20) for s in half]):+.2f} MiB/min")
    lines.append(f"- open fds: {slope_per_minute([(s['t'], s['fds']) for s in half]):+.2f} /min")
    lines.append(f"- data dir: {slope_per_minute([(s['t'], s['disk'] / 2**20) for s in half]):+.2f} "
                 f"MiB/min (feedback is stored: the history grows with the events)")
    for k in kinds:
        pts = [(s["t"], s["lat"][k][2] * 1e3) for s in half if k in s["lat"]]
        lines.append(f"- {k} p99: {slope_per_minute(pts):+.3f} ms/min")
    lines.append("")
    lines.append(f"Errors (other than NOT_FOUND): {latencies.errors or 'none'}")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return 0 if code == 0 and not latencies.errors else 1


if __name__ == "__main__":
    sys.exit(main())

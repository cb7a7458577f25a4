"""Per-tenant knowledge end to end: a real tailord with a tokens file. Each tenant's knowledge
(population prior, cold-start neighbours, trust) is fitted from its own users only, so tenant B's
rankings, suggestions and profiles do not change at all while tenant A's users' feedback changes
and knowledge is refitted; GetServerInfo shows each caller its own tenant's knowledge. Tenants
that opt in (--share_knowledge) share one. Fixed seeds."""
import os
import random
import sys
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "client", "python", "tests"))
from tailor_client import TailorClient, tailor_pb2  # noqa: E402
from test_client import TailordServer  # noqa: E402

A = "tenant-a-token-000001"
B = "tenant-b-token-000001"
ESTABLISHED = 24  # users per tenant with 20 pairs (16 make a user established)


class TenantKnowledgeTest(unittest.TestCase):
    def start(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="tailor-tenants-")
        with open(os.path.join(self.dir, "tokens"), "w") as f:
            f.write(f"a {A}\nb {B} admin\n")
        self.server = TailordServer((f"--auth_tokens_file={self.dir}/tokens", "--refresh_ms=200",
                                     *flags), data_dir=self.dir)
        target = f"127.0.0.1:{self.server.port}"
        self.a = TailorClient(target, token=A)
        self.b = TailorClient(target, token=B)
        self.schema = self.b.server_info().schema.features

    def tearDown(self):
        self.a.close()
        self.b.close()
        self.assertEqual(self.server.stop(), 0)

    def features(self, rng):
        return [f.mean + rng.gauss(0, 1) * f.sd for f in self.schema]

    def pairs(self, client, user, taste, n, rng, first=0):
        """n events of `user` answered by `taste` (weights over z-scored features)."""
        events = []
        for i in range(n):
            x, y = self.features(rng), self.features(rng)
            score = sum(w * (p - q) / f.sd for w, p, q, f in zip(taste, x, y, self.schema))
            chosen, rejected = (x, y) if score > 0 else (y, x)
            events.append(tailor_pb2.FeedbackEvent(
                event_id=f"e{first + i}", user_id=user,
                chosen=tailor_pb2.Candidate(id="c", features=chosen),
                rejected=tailor_pb2.Candidate(id="r", features=rejected)))
        for ack in client.stream_feedback(events, user_id=user):
            self.assertEqual(ack.outcome, "applied", ack.error)

    def populate(self, client, sign, seed, established=ESTABLISHED, prefix="est", cold=6):
        rng = random.Random(seed)
        for u in range(established):
            taste = [sign * 2 + rng.gauss(0, 1) if f < 2 else rng.gauss(0, 1)
                     for f in range(len(self.schema))]
            self.pairs(client, f"{prefix}-{u}", taste, 20, rng)
        for u in range(cold):
            taste = [sign * 2 + rng.gauss(0, 1) if f < 2 else rng.gauss(0, 1)
                     for f in range(len(self.schema))]
            self.pairs(client, f"cold-{u}", taste, 3, rng)

    def answers_of_b(self):
        rng = random.Random(7)
        candidates = [(f"c{i}", self.features(rng)) for i in range(6)]
        out = []
        for user in ["nobody-yet"] + [f"cold-{u}" for u in range(6)] + ["est-0", "est-5"]:
            ranked = self.b.rank(user, candidates)
            out.append((ranked.knowledge_source, [(r.id, r.score, r.probability_best)
                                        for r in ranked.ranked]))
            out.append(self.b.suggest(user, candidates))
            if not user.startswith("nobody"):
                profile = self.b.get_user(user)
                out.append((list(profile.weight_mean), list(profile.weight_stddev)))
        return out

    def wait_for_refreshes(self, client, count=3):
        """Until `count` refreshes newer than now have served `client`'s tenant."""
        start = client.server_info().knowledge.version
        deadline = time.time() + 30
        while client.server_info().knowledge.version < start + count:
            self.assertLess(time.time(), deadline, "knowledge is not refreshed")
            time.sleep(0.05)

    def test_tenant_b_is_answered_the_same_while_tenant_a_changes(self):
        self.start()
        self.populate(self.a, +2, 1)
        self.populate(self.b, -1, 2)
        self.wait_for_refreshes(self.b)
        info_a, info_b = self.a.server_info().knowledge, self.b.server_info().knowledge
        self.assertEqual((info_a.group, info_b.group), ("a", "b"))
        self.assertEqual((info_a.reference_users, info_b.reference_users),
                         (ESTABLISHED, ESTABLISHED))
        self.assertEqual(info_b.population_users, ESTABLISHED)
        # Each tenant's fitted trust is exported under its own knowledge_group.
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.server.metrics_port}/metrics", timeout=10) as page:
            body = page.read().decode()
        for tenant in ("a", "b"):
            self.assertRegex(body, rf'tailor_trust_calibration_users{{knowledge_group="{tenant}"}}')
        before = self.answers_of_b()
        # A's users turn to the opposite taste, new ones arrive, some leave; A's knowledge moves.
        rng = random.Random(3)
        for u in range(0, ESTABLISHED, 2):
            self.pairs(self.a, f"est-{u}", [-4, -4] + [0] * (len(self.schema) - 2), 25, rng,
                       first=20)
        self.populate(self.a, -3, 4, established=12, prefix="new", cold=0)
        for u in range(1, ESTABLISHED, 5):
            self.a.delete_user(f"est-{u}")
        self.wait_for_refreshes(self.a)
        self.assertEqual(self.a.server_info().knowledge.reference_users, ESTABLISHED + 12 - 5)
        self.assertEqual(self.answers_of_b(), before)
        self.assertEqual(self.b.server_info().knowledge.reference_users, ESTABLISHED)

    def test_tenants_that_opt_in_share_one_knowledge(self):
        self.start("--share_knowledge=a,b")
        self.populate(self.a, +2, 1)
        self.populate(self.b, -1, 2)
        self.wait_for_refreshes(self.b)
        for client in (self.a, self.b):
            knowledge = client.server_info().knowledge
            self.assertEqual(knowledge.group, "*")
            self.assertEqual(knowledge.reference_users, 2 * ESTABLISHED)


if __name__ == "__main__":
    unittest.main()

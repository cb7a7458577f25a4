"""The Python client's mixed feedback stream in cluster mode, against in-process gRPC shards
that serve a partition map: split by owner as it is read, acks in input order, an unavailable
owner's events (unacked ones first) sent through the target, errors raised in order."""
import os
import socket
import sys
import threading
import unittest
from concurrent import futures

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tailor_client import (PARTITION_HASH, TailorClient, TailorError,  # noqa: E402
                           partition_of, tailor_pb2)
from tailor_client import tailor_pb2_grpc  # noqa: E402

PARTITIONS = 4


class FakeShard(tailor_pb2_grpc.TailorServicer):
    """Serves the map it is given and acks every streamed event, recording what it received.
    With `fail_after=(n, code)` a stream ends with `code` when its n-th event arrives."""

    def __init__(self, fail_after=None):
        self.cluster = None
        self.fail_after = fail_after
        self.lock = threading.Lock()
        self.received = []  # event ids, in arrival order
        self.streams = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        tailor_pb2_grpc.add_TailorServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def GetServerInfo(self, request, context):
        return tailor_pb2.ServerInfo(cluster=self.cluster)

    def StreamFeedback(self, request_iterator, context):
        with self.lock:
            self.streams += 1
        for n, event in enumerate(request_iterator):
            if self.fail_after is not None and n == self.fail_after[0]:
                context.abort(self.fail_after[1], "shard going away")
            with self.lock:
                self.received.append(event.event_id)
            yield tailor_pb2.FeedbackAck(event_id=event.event_id,
                                         outcome=tailor_pb2.FeedbackAck.OUTCOME_APPLIED)

    def stop(self):
        self.server.stop(grace=None)


def dead_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def event(i):
    user = f"user-{i % 10}"
    return tailor_pb2.FeedbackEvent(event_id=f"e{i}", user_id=user,
                                    chosen=tailor_pb2.Candidate(id="a", features=[1.0]),
                                    rejected=tailor_pb2.Candidate(id="b", features=[0.0]))


class OwnerStreamsTest(unittest.TestCase):
    def setUp(self):
        self.shards = []

    def tearDown(self):
        for shard in self.shards:
            shard.stop()

    def cluster(self, second, second_address=None):
        """Shard `first` (the client's target) owns partitions 0 and 2, `second` 1 and 3."""
        first = FakeShard()
        self.shards += [first] + ([second] if second else [])
        addresses = [f"127.0.0.1:{first.port}",
                     second_address or f"127.0.0.1:{second.port}"]
        first.cluster = tailor_pb2.ClusterRouting(
            partitions=PARTITIONS, map_revision=1, partition_hash=PARTITION_HASH,
            shards=[tailor_pb2.ClusterShardAddress(name=f"s{k}", address=a)
                    for k, a in enumerate(addresses)],
            owners=[0, 1, 0, 1])
        if second:
            second.cluster = first.cluster
        client = TailorClient(addresses[0], timeout=10)
        self.addCleanup(client.close)
        return first, client

    @staticmethod
    def owned_by_second(events):
        return [e.event_id for e in events if partition_of(e.user_id, PARTITIONS) % 2 == 1]

    def test_a_mixed_stream_is_split_by_owner_as_it_is_read(self):
        second = FakeShard()
        first, client = self.cluster(second)
        events = [event(i) for i in range(60)]
        first_ack = threading.Event()

        def lazily():  # the rest only after an ack: nothing waits for the end of the input
            yield from events[:3]
            if not first_ack.wait(10):
                raise RuntimeError("no ack came before the input ended")
            yield from events[3:]

        acks = []
        for ack in client.stream_feedback(lazily()):
            acks.append(ack)
            first_ack.set()
        self.assertEqual([a.event_id for a in acks], [e.event_id for e in events])
        self.assertTrue(all(a.outcome == "applied" for a in acks))
        on_second = self.owned_by_second(events)
        self.assertTrue(0 < len(on_second) < len(events))
        self.assertEqual(second.received, on_second)
        self.assertEqual(first.received, [e.event_id for e in events
                                          if e.event_id not in on_second])
        self.assertEqual((first.streams, second.streams), (1, 1))

    def test_an_unreachable_owners_events_go_through_the_target(self):
        first, client = self.cluster(None, second_address=dead_address())
        events = [event(i) for i in range(30)]
        acks = list(client.stream_feedback(iter(events)))
        self.assertEqual([a.event_id for a in acks], [e.event_id for e in events])
        self.assertEqual(sorted(first.received), sorted(e.event_id for e in events))

    def test_an_owner_lost_mid_stream_hands_its_unacked_events_to_the_target(self):
        second = FakeShard(fail_after=(2, grpc.StatusCode.UNAVAILABLE))
        first, client = self.cluster(second)
        events = [event(i) for i in range(40)]
        acks = list(client.stream_feedback(iter(events)))
        self.assertEqual([a.event_id for a in acks], [e.event_id for e in events])
        on_second = self.owned_by_second(events)
        self.assertEqual(second.received, on_second[:2])
        # The rest of the second shard's events, each once, in order, through the target.
        self.assertEqual([e for e in first.received if e in on_second], on_second[2:])
        self.assertEqual(len(first.received), len(events) - 2)

    def test_an_owners_error_is_raised_after_the_acks_before_it(self):
        second = FakeShard(fail_after=(2, grpc.StatusCode.RESOURCE_EXHAUSTED))
        _, client = self.cluster(second)
        events = [event(i) for i in range(40)]
        third_on_second = self.owned_by_second(events)[2]
        acks = []
        with self.assertRaises(TailorError) as caught:
            for ack in client.stream_feedback(iter(events)):
                acks.append(ack.event_id)
        self.assertEqual(caught.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        ids = [e.event_id for e in events]
        self.assertEqual(acks, ids[:ids.index(third_on_second)])

    def test_a_failing_input_is_raised_after_its_events_acks(self):
        second = FakeShard()
        _, client = self.cluster(second)

        def broken():
            yield from (event(i) for i in range(5))
            raise ValueError("input broke")

        acks = []
        with self.assertRaisesRegex(ValueError, "input broke"):
            for ack in client.stream_feedback(broken()):
                acks.append(ack.event_id)
        self.assertEqual(acks, [f"e{i}" for i in range(5)])


if __name__ == "__main__":
    unittest.main()

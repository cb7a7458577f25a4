"""The contract under malformed input, from a client that sends raw bytes: messages that are not
protobuf, or whose string fields are not UTF-8, get INVALID_ARGUMENT naming the field and the
rule on every RPC (not UNIMPLEMENTED), change nothing stored, and a feedback stream answers such
an event with a REJECTED ack in its place and goes on. Also: health probes that name a service."""
import os
import sys
import unittest

import grpc

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "client", "python", "tests"))
from tailor_client import TailorClient, TailorError, tailor_pb2  # noqa: E402
from test_client import TailordServer, expert  # noqa: E402

NOT_PROTOBUF = b"\xff\xff\xff\xff"  # field 0 / an unterminated varint: not wire format
UNARY = ["RankResponses", "SubmitFeedback", "SuggestComparison", "GetUser", "DeleteUser",
         "GetServerInfo"]


def field(message_type, name, payload):
    """`payload` as the length-delimited field `name` of `message_type` (any bytes at all)."""
    number = message_type.DESCRIPTOR.fields_by_name[name].number
    return bytes([number << 3 | 2, len(payload)]) + payload


class LiveServerTest(unittest.TestCase):
    """One tailord (started with SERVER_ARGS) for the class, a client and a raw channel."""
    SERVER_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.server = TailordServer(cls.SERVER_ARGS)
        cls.target = f"127.0.0.1:{cls.server.port}"
        cls.channel = grpc.insecure_channel(cls.target)
        cls.client = TailorClient(cls.target)
        cls.features = cls.client.server_info().schema.features

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.channel.close()
        assert cls.server.stop() == 0


class MalformedInputTest(LiveServerTest):

    def unary(self, method, payload, service="tailor.v1.Tailor"):
        call = self.channel.unary_unary(f"/{service}/{method}")  # bytes in, bytes out
        return call(payload, timeout=10)

    def assert_invalid(self, method, payload, message, service="tailor.v1.Tailor"):
        with self.assertRaises(grpc.RpcError) as raised:
            self.unary(method, payload, service)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, method)
        self.assertEqual(raised.exception.details(), message, method)

    def event(self, event_id, user):
        return tailor_pb2.FeedbackEvent(
            event_id=event_id, user_id=user,
            chosen=tailor_pb2.Candidate(**dict(zip(("id", "features"),
                                                   expert("a", 0, self.features)))),
            rejected=tailor_pb2.Candidate(**dict(zip(("id", "features"),
                                                     expert("b", 1, self.features)))))

    def test_bytes_that_are_not_protobuf_are_invalid_argument_on_every_rpc(self):
        for method in UNARY:
            request_type = getattr(tailor_pb2, {
                "RankResponses": "RankResponsesRequest", "SubmitFeedback": "SubmitFeedbackRequest",
                "SuggestComparison": "SuggestComparisonRequest", "GetUser": "GetUserRequest",
                "DeleteUser": "DeleteUserRequest", "GetServerInfo": "GetServerInfoRequest"}[method])
            self.assert_invalid(
                method, NOT_PROTOBUF,
                f"request: not a valid {request_type.DESCRIPTOR.full_name} (protobuf wire format)")
        self.assert_invalid("CreateCheckpoint", NOT_PROTOBUF,
                            "request: not a valid tailor.v1.CreateCheckpointRequest "
                            "(protobuf wire format)", service="tailor.v1.TailorAdmin")
        export = self.channel.unary_stream("/tailor.v1.Tailor/ExportUser")
        with self.assertRaises(grpc.RpcError) as raised:
            list(export(NOT_PROTOBUF, timeout=10))
        self.assertEqual(raised.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("not a valid tailor.v1.ExportUserRequest", raised.exception.details())

    def test_invalid_utf8_names_the_field(self):
        # The examples: GetUser with user_id ff fe, and a UTF-16 surrogate (ed a0 80).
        self.assertEqual(field(tailor_pb2.GetUserRequest, "user_id", b"\xff\xfe"),
                         b"\x0a\x02\xff\xfe")
        for bad in (b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\xf4\x90\x80\x80"):
            self.assert_invalid("GetUser", field(tailor_pb2.GetUserRequest, "user_id", bad),
                                "user_id: must be valid UTF-8")
        # Nested: the second candidate's id.
        good = tailor_pb2.Candidate(id="a", features=[0.0] * len(self.features))
        payload = (field(tailor_pb2.RankResponsesRequest, "user_id", b"u")
                   + field(tailor_pb2.RankResponsesRequest, "candidates", good.SerializeToString())
                   + field(tailor_pb2.RankResponsesRequest, "candidates",
                           field(tailor_pb2.Candidate, "id", b"\xff")))
        self.assert_invalid("RankResponses", payload, "candidates[1].id: must be valid UTF-8")

    def test_unparsable_feedback_stores_nothing(self):
        event = self.event("", "unary-user").SerializeToString()
        event += field(tailor_pb2.FeedbackEvent, "event_id", b"\xff\xfe")
        self.assert_invalid("SubmitFeedback",
                            field(tailor_pb2.SubmitFeedbackRequest, "event", event),
                            "event.event_id: must be valid UTF-8")
        with self.assertRaises(TailorError) as raised:
            self.client.get_user("unary-user")
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_stream_answers_an_unparsable_event_and_goes_on(self):
        user = "stream-user"
        bad = self.event("", user).SerializeToString()
        bad += field(tailor_pb2.FeedbackEvent, "event_id", b"\xff\xfe")
        messages = [self.event("e1", user).SerializeToString(), bad, NOT_PROTOBUF,
                    self.event("e3", user).SerializeToString()]
        stream = self.channel.stream_stream("/tailor.v1.Tailor/StreamFeedback")
        call = stream(iter(messages), timeout=10)
        acks = [tailor_pb2.FeedbackAck.FromString(raw) for raw in call]
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        applied, rejected = (tailor_pb2.FeedbackAck.OUTCOME_APPLIED,
                             tailor_pb2.FeedbackAck.OUTCOME_REJECTED)
        self.assertEqual([a.outcome for a in acks], [applied, rejected, rejected, applied])
        self.assertEqual(acks[1].error,
                         "event.event_id: must be valid UTF-8 (event 2 of this stream)")
        self.assertEqual(acks[2].error, "event: not a valid tailor.v1.FeedbackEvent (protobuf "
                         "wire format) (event 3 of this stream)")
        self.assertEqual([a.event_id for a in acks], ["e1", "", "", "e3"])
        self.assertEqual(self.client.get_user(user).feedback_count, 2)

    def test_health_answers_for_the_server_and_for_each_service(self):
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check")
        serving = b"\x08\x01"  # HealthCheckResponse{status: SERVING}
        for service in (b"", b"tailor.v1.Tailor", b"tailor.v1.TailorAdmin"):
            request = bytes([0x0a, len(service)]) + service if service else b""
            self.assertEqual(check(request, timeout=10), serving, service)
        with self.assertRaises(grpc.RpcError) as raised:
            check(b"\x0a\x07unknown", timeout=10)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    unittest.main()


class RoutingHeaderTest(LiveServerTest):
    """User ids that are not printable ASCII, behind --require_user_header: the clients send
    x-user-id percent-encoded and the server decodes it."""
    SERVER_ARGS = ("--require_user_header",)

    def test_any_utf8_user_id_can_be_served(self):
        for user in ("café ☕", "用户 42", "100%", "tab\there", "plain"):
            ack = self.client.feedback(f"{user}/1", user, expert("a", 0, self.features),
                                       expert("b", 1, self.features))
            self.assertEqual(ack.outcome, "applied", user)
            self.assertEqual(self.client.get_user(user).feedback_count, 1, user)

    def test_the_header_is_decoded_and_checked(self):
        get_user = self.channel.unary_unary("/tailor.v1.Tailor/GetUser")
        request = tailor_pb2.GetUserRequest(user_id="café").SerializeToString()
        with self.assertRaises(grpc.RpcError) as raised:  # right user, unknown: NOT_FOUND
            get_user(request, metadata=(("x-user-id", "caf%C3%A9"),), timeout=10)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.NOT_FOUND)
        for header, message in (
                ("caf%zz", "x-user-id: invalid percent-encoding (a '%' must be followed by two "
                           "hex digits)"),
                ("cafe", "x-user-id: metadata 'cafe' does not match user_id 'café'; a router "
                         "hashing the header would split this user across shards")):
            with self.assertRaises(grpc.RpcError) as raised:
                get_user(request, metadata=(("x-user-id", header),), timeout=10)
            self.assertEqual(raised.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, header)
            self.assertEqual(raised.exception.details(), message)


class MetadataLimitTest(unittest.TestCase):
    """Request headers over --max_metadata_bytes are RESOURCE_EXHAUSTED; the limit is shown in
    GetServerInfo and can be raised."""

    def headers_of(self, size, server_args=()):
        server = TailordServer(server_args)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                info = channel.unary_unary("/tailor.v1.Tailor/GetServerInfo")
                limit = tailor_pb2.ServerInfo.FromString(info(b"", timeout=10)).limits
                try:
                    info(b"", metadata=(("x-pad", "a" * size),), timeout=10)
                    return limit.max_metadata_bytes, grpc.StatusCode.OK
                except grpc.RpcError as e:
                    return limit.max_metadata_bytes, e.code()
        finally:
            server.stop()

    def test_default_limit_and_a_raised_one(self):
        self.assertEqual(self.headers_of(4000), (8192, grpc.StatusCode.OK))
        self.assertEqual(self.headers_of(16384), (8192, grpc.StatusCode.RESOURCE_EXHAUSTED))
        self.assertEqual(self.headers_of(16384, ("--max_metadata_bytes=65536",)),
                         (65536, grpc.StatusCode.OK))


class StableProbabilitiesTest(unittest.TestCase):
    """probability_best is exact: identical calls give identical answers, top_k does not change
    them, and they lie in [0, 1] and sum to 1."""

    def test_identical_calls_identical_answers(self):
        server = TailordServer()
        try:
            with TailorClient(f"127.0.0.1:{server.port}") as client:
                features = client.server_info().schema.features
                for i in range(5):
                    client.feedback(f"e{i}", "u", expert("a", 0, features), expert("b", 1, features))
                candidates = [expert(f"k{k}", k, features, level=1.0 + 0.1 * k)
                              for k in range(len(features))]
                answers = {tuple((r.id, r.probability_best) for r in client.rank("u", candidates).ranked)
                           for _ in range(20)}
                self.assertEqual(len(answers), 1)
                (answer,) = answers
                probabilities = [p for _, p in answer]
                self.assertTrue(all(0.0 <= p <= 1.0 for p in probabilities), probabilities)
                self.assertAlmostEqual(sum(probabilities), 1.0, places=12)
                top = client.rank("u", candidates, top_k=3).ranked
                self.assertEqual([(r.id, r.probability_best) for r in top], list(answer[:3]))
        finally:
            server.stop()

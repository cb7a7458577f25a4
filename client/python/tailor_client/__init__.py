"""Python client for Tailor, the gRPC personalization service.

Thin, typed wrapper over the stubs that the build generates from proto/tailor/v1/tailor.proto
(with Debian's protoc and grpc_python_plugin) into tailor_client/_gen. Every call sends the
user id as `x-user-id` metadata so a consistent-hash router keeps each user on one shard.

    client = TailorClient("localhost:50051")
    ranked = client.rank("alice", [("a", [..10 floats..]), ("b", [...])])
    client.feedback("evt-1", "alice", chosen=("a", [...]), rejected=("b", [...]))
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import grpc

_GEN = os.path.join(os.path.dirname(__file__), "_gen")
if not os.path.isdir(_GEN):
    raise ImportError(f"{_GEN} is missing: build Tailor first (scripts/build.sh) to generate it")
sys.path.insert(0, _GEN)
from tailor.v1 import tailor_pb2, tailor_pb2_grpc  # noqa: E402  (generated)

Candidate = tuple[str, Sequence[float]]

__all__ = ["TailorClient", "TailorError", "Ranked", "Ack", "Suggestion", "tailor_pb2"]


ROUTING_HEADER = "x-user-id"


def encode_routing_header(user_id: str) -> str:
    """The x-user-id header for `user_id` (tailor.proto conventions): the id's UTF-8 bytes, with
    every byte outside '!'..'~' and '%' itself percent-encoded as %XX. gRPC metadata is ASCII;
    user ids are any UTF-8."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x25 else f"%{b:02X}"
                   for b in user_id.encode("utf-8"))


class TailorError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `message` names the field and the rule."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Ranked:
    id: str
    score: float
    probability_best: float


@dataclass(frozen=True)
class RankResult:
    ranked: list[Ranked]
    knowledge_source: str  # "personal", "neighbours" or "population"
    user_feedback_count: int


@dataclass(frozen=True)
class Ack:
    event_id: str
    outcome: str  # "applied", "duplicate" or "rejected"
    user_feedback_count: int
    predicted_chosen_probability: float
    sequence: int
    error: str


@dataclass(frozen=True)
class Suggestion:
    first_id: str
    second_id: str
    probability_first_preferred: float
    expected_information_bits: float


def _candidate(c: Candidate) -> tailor_pb2.Candidate:
    return tailor_pb2.Candidate(id=c[0], features=list(c[1]))


def _source(value: int) -> str:
    return tailor_pb2.KnowledgeSource.Name(value).removeprefix("KNOWLEDGE_SOURCE_").lower()


def _ack(ack: tailor_pb2.FeedbackAck) -> Ack:
    return Ack(ack.event_id, tailor_pb2.FeedbackAck.Outcome.Name(ack.outcome)
               .removeprefix("OUTCOME_").lower(), ack.user_feedback_count,
               ack.predicted_chosen_probability, ack.sequence, ack.error)


class TailorClient:
    """One channel, reused; `timeout` seconds per call.

    `token` is sent as `authorization: Bearer <token>`. `root_ca` (PEM bytes) turns on TLS;
    `client_cert` and `client_key` (PEM bytes) add a client certificate for mutual TLS.
    """

    def __init__(self, target: str = "localhost:50051", timeout: float = 2.0,
                 channel: grpc.Channel | None = None, token: str = "",
                 root_ca: bytes | None = None, client_cert: bytes | None = None,
                 client_key: bytes | None = None):
        if channel is None:
            if root_ca is not None or client_cert is not None:
                channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(
                    root_certificates=root_ca, private_key=client_key,
                    certificate_chain=client_cert))
            else:
                channel = grpc.insecure_channel(target)
        self._channel = channel
        self._stub = tailor_pb2_grpc.TailorStub(self._channel)
        self._timeout = timeout
        self._auth = (("authorization", f"Bearer {token}"),) if token else ()

    def _metadata(self, user_id: str = "") -> tuple:
        return (((ROUTING_HEADER, encode_routing_header(user_id)),) if user_id else ()) + self._auth

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "TailorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, user_id: str = ""):
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata(user_id))
        except grpc.RpcError as e:  # one translation, at this boundary
            raise TailorError(e.code(), e.details()) from None

    def rank(self, user_id: str, candidates: Sequence[Candidate], explore: bool = False,
             top_k: int = 0) -> RankResult:
        response = self._call(self._stub.RankResponses, tailor_pb2.RankResponsesRequest(
            user_id=user_id, candidates=[_candidate(c) for c in candidates],
            options=tailor_pb2.RankOptions(explore=explore, top_k=top_k)), user_id)
        return RankResult([Ranked(r.id, r.score, r.probability_best) for r in response.ranked],
                          _source(response.knowledge_source), response.user_feedback_count)

    def feedback(self, event_id: str, user_id: str, chosen: Candidate, rejected: Candidate,
                 prompt_id: str = "", timestamp_micros: int = 0) -> Ack:
        event = tailor_pb2.FeedbackEvent(
            event_id=event_id, user_id=user_id, prompt_id=prompt_id,
            chosen=_candidate(chosen), rejected=_candidate(rejected),
            timestamp_micros=timestamp_micros)
        return _ack(self._call(self._stub.SubmitFeedback,
                               tailor_pb2.SubmitFeedbackRequest(event=event), user_id))

    def stream_feedback(self, events: Iterable[tailor_pb2.FeedbackEvent],
                        user_id: str = "") -> Iterator[Ack]:
        """Streams events; yields their acks in order (each after its event is durable).

        Behind a router that hashes x-user-id, stream one user's events per call and name
        that user in `user_id`; events of other users are then rejected by the server.
        """
        try:
            for ack in self._stub.StreamFeedback(iter(events), metadata=self._metadata(user_id)):
                yield _ack(ack)
        except grpc.RpcError as e:
            raise TailorError(e.code(), e.details()) from None

    def suggest(self, user_id: str, candidates: Sequence[Candidate]) -> Suggestion:
        r = self._call(self._stub.SuggestComparison, tailor_pb2.SuggestComparisonRequest(
            user_id=user_id, candidates=[_candidate(c) for c in candidates]), user_id)
        return Suggestion(r.first_id, r.second_id, r.probability_first_preferred,
                          r.expected_information_bits)

    def get_user(self, user_id: str) -> tailor_pb2.UserProfile:
        return self._call(self._stub.GetUser, tailor_pb2.GetUserRequest(user_id=user_id),
                          user_id)

    def export_user(self, user_id: str) -> list[tailor_pb2.ExportUserResponse]:
        try:
            return list(self._stub.ExportUser(tailor_pb2.ExportUserRequest(user_id=user_id),
                                              timeout=self._timeout,
                                              metadata=self._metadata(user_id)))
        except grpc.RpcError as e:
            raise TailorError(e.code(), e.details()) from None

    def delete_user(self, user_id: str) -> tailor_pb2.DeleteUserResponse:
        return self._call(self._stub.DeleteUser, tailor_pb2.DeleteUserRequest(user_id=user_id),
                          user_id)

    def server_info(self) -> tailor_pb2.ServerInfo:
        return self._call(self._stub.GetServerInfo, tailor_pb2.GetServerInfoRequest())

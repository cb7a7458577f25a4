"""Python client for Tailor, the gRPC personalization service.

Thin, typed wrapper over the stubs that the build generates from proto/tailor/v1/tailor.proto
(with Debian's protoc and grpc_python_plugin) into tailor_client/_gen. Every call sends the
user id as `x-user-id` metadata so a consistent-hash router keeps each user on one shard.

    client = TailorClient("localhost:50051")
    ranked = client.rank("alice", [("a", [..10 floats..]), ("b", [...])])
    client.feedback("evt-1", "alice", chosen=("a", [...]), rejected=("b", [...]))
"""
from __future__ import annotations

import collections
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import grpc

_GEN = os.path.join(os.path.dirname(__file__), "_gen")
if not os.path.isdir(_GEN):
    raise ImportError(f"{_GEN} is missing: build Tailor first (scripts/build.sh) to generate it")
sys.path.insert(0, _GEN)
from tailor.v1 import tailor_pb2, tailor_pb2_grpc  # noqa: E402  (generated)

Candidate = tuple[str, Sequence[float]]

__all__ = ["TailorClient", "TailorError", "Ranked", "Ack", "Suggestion", "tailor_pb2",
           "partition_of", "storage_id_of"]


ROUTING_HEADER = "x-user-id"
# Cluster mode (tailor.proto, ClusterRouting): the partition a client that knows the map sends,
# for routers configured from the map, and the hash it computes the partition with.
PARTITION_HEADER = "x-tailor-partition"
PARTITION_HASH = "fnv1a64-0x9a57"
_PARTITION_SEED = 0x9A57
_FNV_OFFSET = 1469598103934665603
_FNV_PRIME = 1099511628211
_MASK64 = (1 << 64) - 1


def _fnv1a(data: bytes, h: int = _FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


def storage_id_of(tenant: str, user_id: str) -> str:
    """The id a shard stores a user under: "<tenant>/<user_id>", or the user id alone."""
    return f"{tenant}/{user_id}" if tenant else user_id


def partition_of(storage_id: str, partitions: int) -> int:
    """Cluster mode's partition of a user (ClusterRouting.partition_hash "fnv1a64-0x9a57"): the
    same number tailord and the C++ client compute (proto/partition_routing.h)."""
    data = storage_id.encode("utf-8")
    h = _fnv1a(_PARTITION_SEED.to_bytes(8, "little"))
    h = _fnv1a(data, _fnv1a(len(data).to_bytes(8, "little"), h))
    return h % partitions


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


@dataclass(frozen=True)
class _RoutingMap:
    read_at: float
    partitions: int = 0  # 0: no routing (single node, unknown hash, or the read failed)
    tenant: str = ""
    owner_address: tuple[str, ...] = ()  # per partition; "" = no owner


class TailorClient:
    """One channel, reused; `timeout` seconds per call.

    `token` is sent as `authorization: Bearer <token>`. `root_ca` (PEM bytes) turns on TLS;
    `client_cert` and `client_key` (PEM bytes) add a client certificate for mutual TLS.

    Cluster mode: with `route_to_owner` (the default) each user's calls go straight to the shard
    that owns the user, found with the partition map from server_info() (read on first use,
    again every `map_refresh` seconds, and at once after a direct call fails UNAVAILABLE, which
    is then retried through `target`). A stale map costs a forwarded hop, never correctness.
    Against a single node every call goes to `target`. A client given its own `channel` does
    not route (it cannot open channels like it to the owners).
    """

    def __init__(self, target: str = "localhost:50051", timeout: float = 2.0,
                 channel: grpc.Channel | None = None, token: str = "",
                 root_ca: bytes | None = None, client_cert: bytes | None = None,
                 client_key: bytes | None = None, route_to_owner: bool = True,
                 map_refresh: float = 10.0):
        self._credentials = None
        if root_ca is not None or client_cert is not None:
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=root_ca, private_key=client_key, certificate_chain=client_cert)
        self._route_to_owner = route_to_owner and channel is None
        if channel is None:
            channel = self._open(target)
        self._channel = channel
        self._stub = tailor_pb2_grpc.TailorStub(self._channel)
        self._timeout = timeout
        self._auth = (("authorization", f"Bearer {token}"),) if token else ()
        self._map_refresh = map_refresh
        self._lock = threading.Lock()
        self._map: _RoutingMap | None = None
        self._map_reading = False
        self._owners: dict[str, tuple[grpc.Channel, tailor_pb2_grpc.TailorStub]] = {}

    def _open(self, address: str) -> grpc.Channel:
        if self._credentials is not None:
            return grpc.secure_channel(address, self._credentials)
        return grpc.insecure_channel(address)

    def _metadata(self, user_id: str = "", partition: int = -1) -> tuple:
        routing = ((ROUTING_HEADER, encode_routing_header(user_id)),) if user_id else ()
        if partition >= 0:
            routing += ((PARTITION_HEADER, str(partition)),)
        return routing + self._auth

    def close(self) -> None:
        with self._lock:
            owners, self._owners = list(self._owners.values()), {}
        for channel, _ in owners:
            channel.close()
        self._channel.close()

    def __enter__(self) -> "TailorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _routing_map(self) -> _RoutingMap | None:
        now = time.monotonic()
        with self._lock:
            if self._map is not None and now - self._map.read_at < self._map_refresh:
                return self._map
            if self._map_reading:  # another thread reads it; the old one meanwhile
                return self._map
            self._map_reading = True
        fresh = _RoutingMap(read_at=now)
        try:
            info = self._stub.GetServerInfo(tailor_pb2.GetServerInfoRequest(),
                                            timeout=self._timeout, metadata=self._metadata())
            c = info.cluster
            if (info.HasField("cluster") and c.partition_hash == PARTITION_HASH
                    and c.partitions > 0 and len(c.owners) == c.partitions):
                fresh = _RoutingMap(now, c.partitions, c.tenant, tuple(
                    c.shards[o].address if 0 <= o < len(c.shards) else "" for o in c.owners))
        except grpc.RpcError:
            pass  # routes nothing until the next read
        with self._lock:
            self._map_reading = False
            self._map = fresh
            return fresh

    def _invalidate_map(self) -> None:
        with self._lock:
            self._map = None

    def _route(self, user_id: str, direct: bool = True):
        """(stub, owner address or "" for `target`, partition or -1) for a call about
        `user_id`."""
        if not self._route_to_owner or not user_id:
            return self._stub, "", -1
        routing = self._routing_map()
        if routing is None or routing.partitions == 0:
            return self._stub, "", -1
        partition = partition_of(storage_id_of(routing.tenant, user_id), routing.partitions)
        address = routing.owner_address[partition]
        if not direct or not address:
            return self._stub, "", partition
        with self._lock:
            if address not in self._owners:
                channel = self._open(address)
                self._owners[address] = (channel, tailor_pb2_grpc.TailorStub(channel))
            return self._owners[address][1], address, partition

    def address_for(self, user_id: str) -> str:
        """The owning shard's address that calls for `user_id` go to (cluster mode, with
        route_to_owner), or "" when they go to the client's target."""
        return self._route(user_id)[1]

    def _routed(self, user_id: str, call):
        """Runs call(stub, metadata) against the user's owner; a direct call that fails
        UNAVAILABLE is made again through `target`. Errors become TailorError."""
        stub, owner, partition = self._route(user_id)
        try:
            try:
                return call(stub, self._metadata(user_id, partition))
            except grpc.RpcError as e:
                if not owner or e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                self._invalidate_map()
                return call(self._stub, self._metadata(user_id, partition))
        except grpc.RpcError as e:  # one translation, at this boundary
            raise TailorError(e.code(), e.details()) from None

    def _call(self, method: str, request, user_id: str = ""):
        return self._routed(user_id, lambda stub, metadata: getattr(stub, method)(
            request, timeout=self._timeout, metadata=metadata))

    def rank(self, user_id: str, candidates: Sequence[Candidate], explore: bool = False,
             top_k: int = 0) -> RankResult:
        response = self._call("RankResponses", tailor_pb2.RankResponsesRequest(
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
        return _ack(self._call("SubmitFeedback",
                               tailor_pb2.SubmitFeedbackRequest(event=event), user_id))

    def stream_feedback(self, events: Iterable[tailor_pb2.FeedbackEvent],
                        user_id: str = "") -> Iterator[Ack]:
        """Streams events; yields their acks in order (each after its event is durable).

        Behind a router that hashes x-user-id, stream one user's events per call and name
        that user in `user_id`; events of other users are then rejected by the server. In
        cluster mode (with `route_to_owner`) a stream naming `user_id` goes to that user's
        owner, and a stream of many users is split as it is read: one stream per owner, run
        concurrently, each event sent to its user's owner (`events` may be endless; at most
        `_STREAM_READ_AHEAD` events are read ahead of their acks). A direct stream that fails
        UNAVAILABLE sends the rest of its events, unacked ones first, through `target`.
        """
        if not user_id and self._route_to_owner:
            routing = self._routing_map()
            if routing is not None and routing.partitions > 0:
                yield from _OwnerStreams(self).run(events)
                return
        stub, _, partition = self._route(user_id)
        try:
            for ack in stub.StreamFeedback(iter(events),
                                           metadata=self._metadata(user_id, partition)):
                yield _ack(ack)
        except grpc.RpcError as e:
            raise TailorError(e.code(), e.details()) from None

    def suggest(self, user_id: str, candidates: Sequence[Candidate]) -> Suggestion:
        r = self._call("SuggestComparison", tailor_pb2.SuggestComparisonRequest(
            user_id=user_id, candidates=[_candidate(c) for c in candidates]), user_id)
        return Suggestion(r.first_id, r.second_id, r.probability_first_preferred,
                          r.expected_information_bits)

    def get_user(self, user_id: str) -> tailor_pb2.UserProfile:
        return self._call("GetUser", tailor_pb2.GetUserRequest(user_id=user_id),
                          user_id)

    def export_user(self, user_id: str) -> list[tailor_pb2.ExportUserResponse]:
        return self._routed(user_id, lambda stub, metadata: list(stub.ExportUser(
            tailor_pb2.ExportUserRequest(user_id=user_id), timeout=self._timeout,
            metadata=metadata)))

    def delete_user(self, user_id: str) -> tailor_pb2.DeleteUserResponse:
        return self._call("DeleteUser", tailor_pb2.DeleteUserRequest(user_id=user_id),
                          user_id)

    def server_info(self) -> tailor_pb2.ServerInfo:
        return self._call("GetServerInfo", tailor_pb2.GetServerInfoRequest())


# How many events of a mixed feedback stream are read from the caller's iterator ahead of
# their acks.
_STREAM_READ_AHEAD = 4096


class _OwnerStream:
    """One owner's share of a mixed feedback stream: its events not yet sent, those sent and not
    yet acked, and the call carrying them. A direct call that fails UNAVAILABLE is replaced
    once by a call through `target`, which is sent the unacked events first."""

    def __init__(self, client: TailorClient, stub: tailor_pb2_grpc.TailorStub, direct: bool):
        self._client = client
        self._cond = threading.Condition()
        self._todo: collections.deque = collections.deque()
        self._unacked: collections.deque = collections.deque()
        self._closed = False  # no more events will be added
        self._generation = 0  # the call that _requests(generation) feeds
        self._direct = direct
        self._call = self._open(stub)

    def _open(self, stub: tailor_pb2_grpc.TailorStub):
        # Many users' events: no routing header, only the credentials.
        return stub.StreamFeedback(self._requests(self._generation),
                                   metadata=self._client._metadata())

    def _requests(self, generation: int) -> Iterator[tailor_pb2.FeedbackEvent]:
        while True:
            with self._cond:
                while not self._todo and not self._closed and generation == self._generation:
                    self._cond.wait()
                if generation != self._generation or not self._todo:
                    return  # replaced, cancelled, or every event sent
                event = self._todo.popleft()
                self._unacked.append(event)
            yield event

    def add(self, event: tailor_pb2.FeedbackEvent) -> None:
        with self._cond:
            self._todo.append(event)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._closed = True
            self._generation += 1
            self._cond.notify_all()
        self._call.cancel()

    def next_ack(self) -> tailor_pb2.FeedbackAck:
        """The ack of this stream's oldest unacked event; raises TailorError."""
        while True:
            try:
                ack = next(self._call)
            except StopIteration:
                raise TailorError(grpc.StatusCode.UNAVAILABLE,
                                  "feedback stream ended before every ack") from None
            except grpc.RpcError as e:
                if not self._direct or e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise TailorError(e.code(), e.details()) from None
                self._client._invalidate_map()
                with self._cond:
                    self._generation += 1
                    self._todo.extendleft(reversed(self._unacked))
                    self._unacked.clear()
                    self._cond.notify_all()
                self._direct = False
                self._call = self._open(self._client._stub)
                continue
            with self._cond:
                self._unacked.popleft()
            return ack


class _OwnerStreams:
    """A feedback stream of many users split by owner as it is read (cluster mode). A feeder
    thread reads the caller's events, adds each to its owner's stream and queues that stream in
    input order; the caller's generator takes each event's ack from the stream it went to, so
    acks come back in input order."""

    def __init__(self, client: TailorClient):
        self._client = client
        self._lock = threading.Lock()
        self._streams: dict[str, _OwnerStream] = {}  # by owner address; "" = `target`
        self._order: queue.Queue = queue.Queue(maxsize=_STREAM_READ_AHEAD)
        self._stop = threading.Event()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._order.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _stream_for(self, user_id: str) -> _OwnerStream | None:
        stub, address, _ = self._client._route(user_id)
        with self._lock:
            if self._stop.is_set():
                return None
            if address not in self._streams:
                self._streams[address] = _OwnerStream(self._client, stub, direct=bool(address))
            return self._streams[address]

    def _feed(self, events: Iterable[tailor_pb2.FeedbackEvent]) -> None:
        try:
            for event in events:
                stream = self._stream_for(event.user_id)
                if stream is None:
                    return
                stream.add(event)
                self._put(stream)
            self._put(None)
        except Exception as e:  # the caller's iterator failed: raised after the acks before it
            self._put(e)
        finally:
            with self._lock:
                streams = list(self._streams.values())
            for stream in streams:
                stream.close()

    def run(self, events: Iterable[tailor_pb2.FeedbackEvent]) -> Iterator[Ack]:
        feeder = threading.Thread(target=self._feed, args=(events,), daemon=True,
                                  name="tailor-feedback-feeder")
        feeder.start()
        finished = False
        try:
            while True:
                item = self._order.get()
                if item is None:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    raise item
                yield _ack(item.next_ack())
        finally:
            with self._lock:
                self._stop.set()
                streams = list(self._streams.values())
            if finished:
                feeder.join()
            else:  # an error, or the caller stopped reading: end every call (the feeder ends
                for stream in streams:  # at its next event)
                    stream.cancel()

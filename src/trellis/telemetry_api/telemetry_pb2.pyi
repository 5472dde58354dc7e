from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reporter(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORTER_UNSPECIFIED: _ClassVar[Reporter]
    SOURCE: _ClassVar[Reporter]
    DESTINATION: _ClassVar[Reporter]
REPORTER_UNSPECIFIED: Reporter
SOURCE: Reporter
DESTINATION: Reporter

class ProxyMessage(_message.Message):
    __slots__ = ("hello", "report", "tap_events")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    TAP_EVENTS_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    report: Report
    tap_events: TapEvents
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., report: _Optional[_Union[Report, _Mapping]] = ..., tap_events: _Optional[_Union[TapEvents, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node_id", "workload", "namespace", "service", "bucket_bounds_ms", "report_interval_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    BUCKET_BOUNDS_MS_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    workload: str
    namespace: str
    service: str
    bucket_bounds_ms: _containers.RepeatedScalarFieldContainer[float]
    report_interval_ms: int
    def __init__(self, node_id: _Optional[str] = ..., workload: _Optional[str] = ..., namespace: _Optional[str] = ..., service: _Optional[str] = ..., bucket_bounds_ms: _Optional[_Iterable[float]] = ..., report_interval_ms: _Optional[int] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("sequence", "interval_ms", "edges", "overflowed")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    OVERFLOWED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    interval_ms: int
    edges: _containers.RepeatedCompositeFieldContainer[EdgeDelta]
    overflowed: int
    def __init__(self, sequence: _Optional[int] = ..., interval_ms: _Optional[int] = ..., edges: _Optional[_Iterable[_Union[EdgeDelta, _Mapping]]] = ..., overflowed: _Optional[int] = ...) -> None: ...

class EdgeDelta(_message.Message):
    __slots__ = ("reporter", "source", "destination", "mtls", "requests", "errors", "denied", "buckets")
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    MTLS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DENIED_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    reporter: Reporter
    source: str
    destination: str
    mtls: bool
    requests: int
    errors: int
    denied: int
    buckets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, reporter: _Optional[_Union[Reporter, str]] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., mtls: _Optional[bool] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., denied: _Optional[int] = ..., buckets: _Optional[_Iterable[int]] = ...) -> None: ...

class TapEvents(_message.Message):
    __slots__ = ("tap_id", "events", "dropped")
    TAP_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    tap_id: str
    events: _containers.RepeatedCompositeFieldContainer[TapEvent]
    dropped: int
    def __init__(self, tap_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[TapEvent, _Mapping]]] = ..., dropped: _Optional[int] = ...) -> None: ...

class TapEvent(_message.Message):
    __slots__ = ("time", "direction", "source", "destination", "method", "authority", "path", "status", "latency_ms", "flags", "route", "trace_id", "request_id", "headers", "mtls", "workload")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    MTLS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    time: float
    direction: str
    source: str
    destination: str
    method: str
    authority: str
    path: str
    status: int
    latency_ms: float
    flags: str
    route: str
    trace_id: str
    request_id: str
    headers: _containers.ScalarMap[str, str]
    mtls: bool
    workload: str
    def __init__(self, time: _Optional[float] = ..., direction: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., method: _Optional[str] = ..., authority: _Optional[str] = ..., path: _Optional[str] = ..., status: _Optional[int] = ..., latency_ms: _Optional[float] = ..., flags: _Optional[str] = ..., route: _Optional[str] = ..., trace_id: _Optional[str] = ..., request_id: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., mtls: _Optional[bool] = ..., workload: _Optional[str] = ...) -> None: ...

class ControlMessage(_message.Message):
    __slots__ = ("tap_start", "tap_stop", "notice")
    TAP_START_FIELD_NUMBER: _ClassVar[int]
    TAP_STOP_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    tap_start: TapStart
    tap_stop: TapStop
    notice: Notice
    def __init__(self, tap_start: _Optional[_Union[TapStart, _Mapping]] = ..., tap_stop: _Optional[_Union[TapStop, _Mapping]] = ..., notice: _Optional[_Union[Notice, _Mapping]] = ...) -> None: ...

class TapStart(_message.Message):
    __slots__ = ("tap_id", "service", "inbound", "outbound", "path_prefix", "method", "status_class", "max_events_per_second", "duration_ms")
    TAP_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INBOUND_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATUS_CLASS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    tap_id: str
    service: str
    inbound: bool
    outbound: bool
    path_prefix: str
    method: str
    status_class: int
    max_events_per_second: int
    duration_ms: int
    def __init__(self, tap_id: _Optional[str] = ..., service: _Optional[str] = ..., inbound: _Optional[bool] = ..., outbound: _Optional[bool] = ..., path_prefix: _Optional[str] = ..., method: _Optional[str] = ..., status_class: _Optional[int] = ..., max_events_per_second: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class TapStop(_message.Message):
    __slots__ = ("tap_id",)
    TAP_ID_FIELD_NUMBER: _ClassVar[int]
    tap_id: str
    def __init__(self, tap_id: _Optional[str] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("message", "refused_reports")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REPORTS_FIELD_NUMBER: _ClassVar[int]
    message: str
    refused_reports: int
    def __init__(self, message: _Optional[str] = ..., refused_reports: _Optional[int] = ...) -> None: ...

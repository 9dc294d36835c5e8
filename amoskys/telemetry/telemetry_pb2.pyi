from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HostMetrics(_message.Message):
    __slots__ = ("host_id", "ts_ns", "source_agent", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_AGENT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    ts_ns: int
    source_agent: str
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, host_id: _Optional[str] = ..., ts_ns: _Optional[int] = ..., source_agent: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class MetricFrame(_message.Message):
    __slots__ = ("source_agent", "names", "host_ids", "ts_ns", "values")
    SOURCE_AGENT_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    HOST_IDS_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    source_agent: str
    names: _containers.RepeatedScalarFieldContainer[str]
    host_ids: _containers.RepeatedScalarFieldContainer[str]
    ts_ns: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, source_agent: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., host_ids: _Optional[_Iterable[str]] = ..., ts_ns: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class FlowRecord(_message.Message):
    __slots__ = ("host_id", "ts_ns", "source_agent", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "bytes_sent", "bytes_received", "packets_sent", "packets_received", "duration_ns", "state")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_AGENT_FIELD_NUMBER: _ClassVar[int]
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    PACKETS_SENT_FIELD_NUMBER: _ClassVar[int]
    PACKETS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    ts_ns: int
    source_agent: str
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: str
    bytes_sent: int
    bytes_received: int
    packets_sent: int
    packets_received: int
    duration_ns: int
    state: str
    def __init__(self, host_id: _Optional[str] = ..., ts_ns: _Optional[int] = ..., source_agent: _Optional[str] = ..., src_ip: _Optional[str] = ..., src_port: _Optional[int] = ..., dst_ip: _Optional[str] = ..., dst_port: _Optional[int] = ..., protocol: _Optional[str] = ..., bytes_sent: _Optional[int] = ..., bytes_received: _Optional[int] = ..., packets_sent: _Optional[int] = ..., packets_received: _Optional[int] = ..., duration_ns: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class ProcessEvent(_message.Message):
    __slots__ = ("host_id", "ts_ns", "source_agent", "kind", "pid", "ppid", "name", "exe", "username", "exit_code")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[ProcessEvent.Kind]
        START: _ClassVar[ProcessEvent.Kind]
        EXIT: _ClassVar[ProcessEvent.Kind]
    KIND_UNSPECIFIED: ProcessEvent.Kind
    START: ProcessEvent.Kind
    EXIT: ProcessEvent.Kind
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_AGENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    ts_ns: int
    source_agent: str
    kind: ProcessEvent.Kind
    pid: int
    ppid: int
    name: str
    exe: str
    username: str
    exit_code: int
    def __init__(self, host_id: _Optional[str] = ..., ts_ns: _Optional[int] = ..., source_agent: _Optional[str] = ..., kind: _Optional[_Union[ProcessEvent.Kind, str]] = ..., pid: _Optional[int] = ..., ppid: _Optional[int] = ..., name: _Optional[str] = ..., exe: _Optional[str] = ..., username: _Optional[str] = ..., exit_code: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("metrics", "flow", "process", "frame")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    metrics: HostMetrics
    flow: FlowRecord
    process: ProcessEvent
    frame: MetricFrame
    def __init__(self, metrics: _Optional[_Union[HostMetrics, _Mapping]] = ..., flow: _Optional[_Union[FlowRecord, _Mapping]] = ..., process: _Optional[_Union[ProcessEvent, _Mapping]] = ..., frame: _Optional[_Union[MetricFrame, _Mapping]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("agent_id", "seq", "ts_ns", "events")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    seq: int
    ts_ns: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, agent_id: _Optional[str] = ..., seq: _Optional[int] = ..., ts_ns: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("agent_id", "seq", "ts_ns", "idempotency_key", "payload", "signature")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    seq: int
    ts_ns: int
    idempotency_key: bytes
    payload: bytes
    signature: bytes
    def __init__(self, agent_id: _Optional[str] = ..., seq: _Optional[int] = ..., ts_ns: _Optional[int] = ..., idempotency_key: _Optional[bytes] = ..., payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

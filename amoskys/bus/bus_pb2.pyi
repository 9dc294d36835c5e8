from amoskys.telemetry import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ack(_message.Message):
    __slots__ = ("status", "reason", "retry_after_ms", "seq", "stored", "duplicate", "rejected")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Ack.Status]
        OK: _ClassVar[Ack.Status]
        RETRY: _ClassVar[Ack.Status]
        INVALID: _ClassVar[Ack.Status]
        UNAUTHORIZED: _ClassVar[Ack.Status]
    STATUS_UNSPECIFIED: Ack.Status
    OK: Ack.Status
    RETRY: Ack.Status
    INVALID: Ack.Status
    UNAUTHORIZED: Ack.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    status: Ack.Status
    reason: str
    retry_after_ms: int
    seq: int
    stored: int
    duplicate: int
    rejected: int
    def __init__(self, status: _Optional[_Union[Ack.Status, str]] = ..., reason: _Optional[str] = ..., retry_after_ms: _Optional[int] = ..., seq: _Optional[int] = ..., stored: _Optional[int] = ..., duplicate: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("after_position", "subscriber")
    AFTER_POSITION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    after_position: int
    subscriber: str
    def __init__(self, after_position: _Optional[int] = ..., subscriber: _Optional[str] = ...) -> None: ...

class StoredBatch(_message.Message):
    __slots__ = ("position", "agent_id", "batch")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    position: int
    agent_id: str
    batch: _telemetry_pb2.EventBatch
    def __init__(self, position: _Optional[int] = ..., agent_id: _Optional[str] = ..., batch: _Optional[_Union[_telemetry_pb2.EventBatch, _Mapping]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("serving", "version", "stored_events")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STORED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    version: str
    stored_events: int
    def __init__(self, serving: _Optional[bool] = ..., version: _Optional[str] = ..., stored_events: _Optional[int] = ...) -> None: ...

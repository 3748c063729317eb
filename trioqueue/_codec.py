"""Codecs: how task arguments and results become bytes, and back into typed values."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import cbor2
import msgspec

from ._errors import CodecError

__all__ = ["CborCodec", "Codec", "JsonCodec", "json_error"]

DEFAULT_MAX_SIZE = 1 << 20  # 1 MiB


@runtime_checkable
class Codec(Protocol):
    """How values are turned into stored bytes and back.

    A codec is a plain object; trioqueue calls it from the Trio thread, so its
    methods must be quick and must not block.

    Attributes:
      name: A short name (``"json"``, ``"cbor"``) stored with nothing; for display.
      max_size: Largest payload in bytes accepted at push and at decode.
    """

    name: str
    max_size: int

    def encode(self, value: Any) -> bytes:
        """Return ``value`` as bytes.

        Raises:
          CodecError: if the value cannot be encoded or is larger than ``max_size``.
        """
        ...

    def decoder(self, type_: Any) -> Callable[[bytes], Any]:
        """Return a function that decodes a payload into an instance of ``type_``.

        ``type_`` is a handler's first parameter annotation (``Any`` for none):
        a dataclass, a TypedDict, a primitive, lists and dicts of them. The
        function raises ``CodecError`` naming the field that does not fit.
        """
        ...


def _enc_hook(obj: Any) -> Any:
    # Subclasses of builtins (TaskId, Attempt, Meta, enums of str...) as their base.
    base: Any
    for base in (bool, int, float, str, bytes, dict, list, tuple):
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"objects of type {type(obj).__name__} are not supported")


def _check_size(codec: Codec, data: bytes) -> bytes:
    if len(data) > codec.max_size:
        raise CodecError(
            f"payload is {len(data)} bytes, over the {codec.name} codec's limit of "
            f"max_size={codec.max_size} bytes"
        )
    return data


def _validation_error(type_: Any, exc: Exception) -> CodecError:
    name = getattr(type_, "__name__", None) or repr(type_)
    return CodecError(f"payload does not fit {name}: {exc}")


# A JSON escape: a ``\uXXXX`` or any other backslash pair, read left to right
# so that an escaped backslash is never taken for the start of a ``\u``.
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


def _lone_surrogate(data: bytes) -> str | None:
    """Return the first escaped lone surrogate in JSON text (``\\ud800``), if any."""
    high: str | None = None
    at = -1
    for m in _ESCAPE.finditer(data):
        hex_ = m.group(1)
        unit = int(hex_, 16) if hex_ else -1
        if high is not None:
            if 0xDC00 <= unit <= 0xDFFF and m.start() == at:
                high = None
                continue
            return high
        if 0xD800 <= unit <= 0xDBFF:
            high, at = "\\u" + hex_.decode().lower(), m.end()
        elif 0xDC00 <= unit <= 0xDFFF:
            return "\\u" + hex_.decode().lower()
    return high


def json_error(data: bytes, exc: Exception) -> str:
    """Return why ``data`` is not valid JSON, naming an escaped lone surrogate as the cause.

    Args:
      data: The JSON text that failed to decode.
      exc: The decoder's error.
    """
    lone = _lone_surrogate(data)
    if lone is not None:
        return (
            f"it holds an escaped lone surrogate ({lone}), which is not text: "
            f"a surrogate escape must be a high (\\ud800-\\udbff) and low "
            f"(\\udc00-\\udfff) pair"
        )
    return str(exc)


class JsonCodec:
    """JSON, the default codec (msgspec does the encoding and typed decoding).

    Example::

        async with trioqueue.open_backend("sqlite:///jobs.db", codec=JsonCodec()) as b:
            ...

    Args:
      max_size: Largest payload in bytes (default 1 MiB).
    """

    name = "json"

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)

    def encode(self, value: Any) -> bytes:
        """Return ``value`` as JSON bytes; see ``Codec.encode``."""
        try:
            data = self._encoder.encode(value)
        except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
            raise CodecError(f"cannot encode {type(value).__name__} as JSON: {exc}") from exc
        return _check_size(self, data)

    def decoder(self, type_: Any) -> Callable[[bytes], Any]:
        """Return a typed JSON decoder for ``type_``; see ``Codec.decoder``."""
        dec = msgspec.json.Decoder(type_)

        def decode(data: bytes) -> Any:
            try:
                return dec.decode(_check_size(self, data))
            except msgspec.ValidationError as exc:
                raise _validation_error(type_, exc) from exc
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                raise CodecError(f"payload is not valid JSON: {json_error(data, exc)}") from exc
            except RecursionError as exc:
                raise CodecError("payload is nested too deeply to decode") from exc

        return decode

    def __repr__(self) -> str:
        return f"JsonCodec(max_size={self.max_size})"


def _refuse_tag(decoder: Any) -> Any:
    raise cbor2.CBORDecodeError(
        "shared references, string references, regular expressions and MIME tags are refused"
    )


# Shared references (28, 29) can build cycles that escape the depth limit;
# string references (25, and their namespace 256) let a small payload expand
# to gigabytes, each reference copying a whole earlier string; regular
# expressions (35) and MIME messages (36) run parsers on untrusted input.
# With these gone, what a decode allocates grows linearly with the payload,
# which ``max_size`` bounds.
_REFUSED_TAGS = {tag: _refuse_tag for tag in (25, 28, 29, 35, 36, 256)}


class CborCodec:
    """CBOR (RFC 8949) through cbor2, decoded with safety limits.

    Decoding refuses payloads over ``max_size`` bytes, nesting deeper than
    ``max_depth``, indefinite-length items, duplicate map keys, bytes after
    the first item, shared references (tags 28 and 29), string references
    (25 and 256), regular expressions (35) and MIME messages (36), so what a
    decode allocates stays proportional to the payload. Values are turned
    into plain data (dataclasses become maps) before encoding.

    Example::

        codec = CborCodec(max_size=64 * 1024, max_depth=32)

    Args:
      max_size: Largest payload in bytes (default 1 MiB).
      max_depth: Deepest nesting of containers accepted when decoding (default 64).
    """

    name = "cbor"

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = 64) -> None:
        self.max_size = max_size
        self.max_depth = max_depth

    def encode(self, value: Any) -> bytes:
        """Return ``value`` as CBOR bytes; see ``Codec.encode``."""
        try:
            data: bytes = cbor2.dumps(msgspec.to_builtins(value, enc_hook=_enc_hook))
        except (TypeError, ValueError, OverflowError, RecursionError, cbor2.CBOREncodeError) as exc:
            raise CodecError(f"cannot encode {type(value).__name__} as CBOR: {exc}") from exc
        return _check_size(self, data)

    def decoder(self, type_: Any) -> Callable[[bytes], Any]:
        """Return a typed CBOR decoder for ``type_``; see ``Codec.decoder``."""
        plain = type_ is Any

        def decode(data: bytes) -> Any:
            stream = io.BytesIO(_check_size(self, data))
            try:
                obj = cbor2.CBORDecoder(
                    stream,
                    max_depth=self.max_depth,
                    allow_indefinite=False,
                    allow_duplicate_keys=False,
                    strict_hashable_types=True,
                    semantic_decoders=_REFUSED_TAGS,
                ).decode()
            except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
                raise CodecError(f"payload is not valid CBOR within the limits: {exc}") from exc
            extra = len(data) - stream.tell()
            if extra:
                raise CodecError(f"payload is not valid CBOR: {extra} bytes after the first item")
            if plain:
                return obj
            try:
                return msgspec.convert(obj, type_)
            except msgspec.ValidationError as exc:
                raise _validation_error(type_, exc) from exc

        return decode

    def __repr__(self) -> str:
        return f"CborCodec(max_size={self.max_size}, max_depth={self.max_depth})"

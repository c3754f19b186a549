"""A multipart/form-data body received as it streams (python-multipart's parser): the one
file part goes to a temporary file, counted and hashed on the way, and refused as soon as
it passes its limit; the other parts are short text fields."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

MAX_FIELD_BYTES = 1024  # a text field (name, label_column, ...)
FORM_SLACK = 64 * 1024  # the body's bytes beyond the file: boundaries, headers, fields
FILE_FIELD = "file"


class TooLarge(Exception):
    """The file (or the whole body) passed its limit; `seen`: bytes received so far."""

    def __init__(self, seen: int, limit: int) -> None:
        super().__init__(f"at least {seen:,} bytes, over the limit of {limit:,}")
        self.seen, self.limit = seen, limit


class BadForm(ValueError):
    """A body that is not the form expected; `field` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class ReceivedFile:
    path: str
    filename: str
    size: int = 0
    sha256: str = ""
    head: bytes = b""  # the first bytes, to tell an .npz (a zip) from a CSV


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    value: bytearray = field(default_factory=bytearray)
    file: ReceivedFile | None = None


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type, or BadForm."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadForm(FILE_FIELD, "send the dataset as multipart/form-data with a part named "
                      "'file' (curl -F file=@data.csv -F name=mydata ...), got Content-Type "
                      f"{content_type or 'none'!r}")
    return params[b"boundary"]


class StreamedForm:
    """Feed it the body's chunks with `write`; then `fields` and `file` hold the form.
    `close` removes the temporary file (the caller's job, once it has read it)."""

    def __init__(self, boundary: bytes, file_limit: int, directory: str | None = None) -> None:
        self.file_limit = file_limit
        self.body_limit = file_limit + FORM_SLACK
        self.directory = directory
        self.fields: dict[str, str] = {}
        self.file: ReceivedFile | None = None
        self.received = 0
        self._stream: Any = None
        self._hash = hashlib.sha256()
        self._part = _Part()
        self._header = [bytearray(), bytearray()]
        self._ended = False
        callbacks: Any = {
            "on_part_begin": self._begin, "on_part_data": self._data,
            "on_part_end": self._end, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_end": self._form_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.body_limit:
            raise TooLarge(self.received, self.body_limit)
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise BadForm(FILE_FIELD, f"the multipart body is malformed: {exc}") from None

    def finish(self) -> None:
        """The body ended: check that the form did too and that a file came."""
        if not self._ended:
            raise BadForm(FILE_FIELD, "the multipart body ended before its closing boundary")
        if self.file is None:
            raise BadForm(FILE_FIELD, "the form has no file: send the dataset as a part named "
                          "'file' with a filename")

    def close(self) -> None:
        if self._stream is not None and not self._stream.closed:
            self._stream.close()
        if self.file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.file.path)

    # python-multipart's callbacks -----------------------------------------------------
    def _begin(self) -> None:
        self._part = _Part()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def _header_end(self) -> None:
        name, value = self._header
        self._part.headers[name.decode("latin-1").lower()] = bytes(value)
        self._header = [bytearray(), bytearray()]

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._part.headers.get("content-disposition", b""))
        self._part.name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is None:
            return
        if self.file is not None:
            raise BadForm(FILE_FIELD, "the form has two files; send one dataset at a time")
        if self._part.name != FILE_FIELD:
            raise BadForm(self._part.name or FILE_FIELD, f"the file part must be named "
                          f"'file', got {self._part.name!r}")
        self._stream = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in _end/close)
            prefix="descent-upload-", dir=self.directory, delete=False)
        self.file = ReceivedFile(self._stream.name, filename.decode("utf-8", "replace"))
        self._part.file = self.file

    def _data(self, data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        received = self._part.file
        if received is None:
            if len(self._part.value) + len(piece) > MAX_FIELD_BYTES:
                raise BadForm(self._part.name, f"the field {self._part.name!r} is over "
                              f"{MAX_FIELD_BYTES} bytes")
            self._part.value += piece
            return
        received.size += len(piece)
        if received.size > self.file_limit:
            raise TooLarge(received.size, self.file_limit)
        if len(received.head) < 8:
            received.head += piece[: 8 - len(received.head)]
        self._hash.update(piece)
        self._stream.write(piece)

    def _end(self) -> None:
        part = self._part
        if part.file is not None:
            self._stream.close()
            part.file.sha256 = self._hash.hexdigest()
            return
        if part.name in self.fields:
            raise BadForm(part.name, f"the field {part.name!r} is given twice")
        try:
            self.fields[part.name] = part.value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadForm(part.name, f"the field {part.name!r} is not UTF-8 text") from None

    def _form_end(self) -> None:
        self._ended = True

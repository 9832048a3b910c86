"""The names of an ONNX graph's first nodes, read straight from the file's protobuf encoding.

insightface's ``ArcFaceONNX`` decides how to normalise pixels from the names of a model's first nodes
(:func:`facestra.models.onnx.graph_convention`). onnxruntime does not expose node names, and the ``onnx``
package costs about a second to import and parses the whole graph with its weights; the few fields needed
here are three levels down in a format that takes thirty lines to walk (ModelProto field 7 ``graph`` ->
GraphProto field 1 ``node`` -> NodeProto field 3 ``name``), over a memory map, stopping after the nodes
wanted. A file that is not such a protobuf is a :class:`ValueError`.
"""

from __future__ import annotations

import mmap
import os

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_MODEL_GRAPH, _GRAPH_NODE, _NODE_NAME = 7, 1, 3


def _varint(data: memoryview | bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated or malformed protobuf varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _fields(data: memoryview, start: int, stop: int):
    """``(field number, wire type, value or (begin, end) of its bytes)`` of a message in ``data[start:stop]``."""
    position = start
    while position < stop:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, position = _varint(data, position)
            yield number, wire, value
        elif wire == _LENGTH:
            length, position = _varint(data, position)
            if position + length > stop:
                raise ValueError("a protobuf field runs past the end of its message")
            yield number, wire, (position, position + length)
            position += length
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _node_name(data: memoryview, span: tuple[int, int]) -> str:
    for number, wire, value in _fields(data, *span):
        if number == _NODE_NAME and wire == _LENGTH:
            return bytes(data[value[0]:value[1]]).decode("utf-8", "replace")
    return ""  # an unnamed node


def first_node_names(path: str | os.PathLike, count: int) -> list[str]:
    """The names of the first ``count`` nodes of the graph of the ONNX model at ``path``, in graph order."""
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        data = memoryview(mapped)
        try:
            names: list[str] = []
            for number, wire, span in _fields(data, 0, len(data)):
                if number != _MODEL_GRAPH or wire != _LENGTH:
                    continue
                for node_number, node_wire, node_span in _fields(data, *span):
                    if node_number != _GRAPH_NODE or node_wire != _LENGTH:
                        continue
                    names.append(_node_name(data, node_span))
                    if len(names) >= count:
                        return names
                return names
            raise ValueError("no graph in the file")
        finally:
            data.release()

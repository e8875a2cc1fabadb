#!/usr/bin/python3
"""verify_metrics.py -- independent readers for the files trainer/metrics.c and
trainer/tboard.c write, used by tests/metrics/test_metrics.c. Pure stdlib, so it
runs where the tensorboard package is not installed (Debian ships none).

  verify_metrics.py tfevents EVENT_FILE EXPECTED.json
      Reads every record (uint64 length, masked CRC-32C of the length, data,
      masked CRC-32C of the data), checks both CRCs, decodes each Event by hand
      (protobuf wire format) and compares with EXPECTED, a JSON list:
        [{"wall_time": 1.5, "step": 0, "file_version": "brain.Event:2"},
         {"wall_time": 2.0, "step": 1, "scalars": [["loss", 0.25], ...]},
         {"wall_time": 3.0, "step": 2, "text": ["tag", "markdown"]},
         {"wall_time": 4.0, "step": 4, "session_start": true}]
      Scalar values are compared after rounding the expected double to float32;
      null stands for NaN.

  verify_metrics.py jsonl FILE EXPECTED.json
      Parses every line with the json module (NaN/Infinity rejected: the writer
      must emit null), keeping key order, and compares with EXPECTED, a JSON
      list of objects (key order matters).

Exit status 0 when everything matches; otherwise 1 with the first difference
on stderr.
"""
import json
import math
import re
import struct
import sys


def crc32c(data):
    """Bitwise CRC-32C (Castagnoli, reflected 0x82F63B78): slow but obviously
    right, and independent of the table-driven C implementation."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class Fail(Exception):
    pass


def read_varint(buf, pos):
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise Fail("varint runs past the end of the message")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise Fail("varint longer than 10 bytes")


def fields(buf):
    """Yields (field_number, wire_type, value) for one serialized message."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise Fail("fixed64 field %d runs past the end" % field)
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise Fail("length-delimited field %d runs past the end" % field)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            if pos + 4 > len(buf):
                raise Fail("fixed32 field %d runs past the end" % field)
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise Fail("unsupported wire type %d (field %d)" % (wire, field))
        yield field, wire, value


def int64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def decode_value(buf):
    out = {}
    for field, wire, v in fields(buf):
        if field == 1 and wire == 2:
            out["tag"] = v.decode("utf-8")
        elif field == 2 and wire == 5:
            out["simple_value"] = struct.unpack("<f", v)[0]
        elif field == 8 and wire == 2:
            tensor = {"string_val": []}
            for tf, tw, tv in fields(v):
                if tf == 1 and tw == 0:
                    tensor["dtype"] = tv
                elif tf == 2 and tw == 2:
                    tensor["shape"] = tv
                elif tf == 8 and tw == 2:
                    tensor["string_val"].append(tv.decode("utf-8"))
            out["tensor"] = tensor
        elif field == 9 and wire == 2:
            for mf, mw, mv in fields(v):
                if mf == 1 and mw == 2:
                    for pf, pw, pv in fields(mv):
                        if pf == 1 and pw == 2:
                            out["plugin_name"] = pv.decode("utf-8")
        else:
            raise Fail("unexpected Summary.Value field %d (wire %d)" % (field, wire))
    return out


def decode_event(buf):
    ev = {"step": 0}
    for field, wire, v in fields(buf):
        if field == 1 and wire == 1:
            ev["wall_time"] = struct.unpack("<d", v)[0]
        elif field == 2 and wire == 0:
            ev["step"] = int64(v)
        elif field == 3 and wire == 2:
            ev["file_version"] = v.decode("utf-8")
        elif field == 5 and wire == 2:
            ev["values"] = [decode_value(vv) for f, w, vv in fields(v) if f == 1 and w == 2]
        elif field == 7 and wire == 2:
            ev["session_status"] = dict((f, vv) for f, w, vv in fields(v) if w == 0).get(1, 0)
        else:
            raise Fail("unexpected Event field %d (wire %d)" % (field, wire))
    return ev


def read_records(path):
    with open(path, "rb") as f:
        data = f.read()
    pos, records = 0, []
    while pos < len(data):
        if pos + 12 > len(data):
            raise Fail("truncated record header at byte %d" % pos)
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if len_crc != masked(crc32c(header)):
            raise Fail("record %d: length CRC 0x%08x != 0x%08x" % (len(records), len_crc, masked(crc32c(header))))
        start = pos + 12
        if start + length + 4 > len(data):
            raise Fail("record %d: truncated data" % len(records))
        body = data[start:start + length]
        (data_crc,) = struct.unpack("<I", data[start + length:start + length + 4])
        if data_crc != masked(crc32c(body)):
            raise Fail("record %d: data CRC 0x%08x != 0x%08x" % (len(records), data_crc, masked(crc32c(body))))
        records.append(body)
        pos = start + length + 4
    return records


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check_tfevents(path, expected):
    name = path.rsplit("/", 1)[-1]
    if not re.fullmatch(r"events\.out\.tfevents\.\d+\.[^/]+", name):
        raise Fail("file name %r is not events.out.tfevents.<secs>.<host>" % name)
    events = [decode_event(r) for r in read_records(path)]
    if len(events) != len(expected):
        raise Fail("%d events, expected %d: %r" % (len(events), len(expected), events))
    for i, (got, want) in enumerate(zip(events, expected)):
        where = "event %d" % i
        if got.get("wall_time") != want["wall_time"]:
            raise Fail("%s: wall_time %r != %r" % (where, got.get("wall_time"), want["wall_time"]))
        if got["step"] != want["step"]:
            raise Fail("%s: step %r != %r" % (where, got["step"], want["step"]))
        if "file_version" in want:
            if got.get("file_version") != want["file_version"]:
                raise Fail("%s: file_version %r" % (where, got.get("file_version")))
        elif "scalars" in want:
            values = got.get("values")
            if values is None or len(values) != len(want["scalars"]):
                raise Fail("%s: values %r, expected %r" % (where, values, want["scalars"]))
            for v, (tag, x) in zip(values, want["scalars"]):
                if v.get("tag") != tag:
                    raise Fail("%s: tag %r != %r" % (where, v.get("tag"), tag))
                sv = v.get("simple_value")
                ok = sv is not None and (math.isnan(sv) if x is None else sv == f32(x))
                if not ok:
                    raise Fail("%s: %s = %r, expected %r as float32" % (where, tag, sv, x))
        elif "text" in want:
            values = got.get("values") or [{}]
            v = values[0]
            tensor = v.get("tensor", {})
            if (len(values) != 1 or v.get("tag") != want["text"][0] or v.get("plugin_name") != "text"
                    or tensor.get("dtype") != 7 or tensor.get("string_val") != [want["text"][1]]):
                raise Fail("%s: text summary %r, expected %r" % (where, values, want["text"]))
        elif "session_start" in want:
            if got.get("session_status") != 1:
                raise Fail("%s: expected SessionLog START, got %r" % (where, got))
        else:
            raise Fail("%s: bad expectation %r" % (where, want))


def reject_constant(name):
    raise Fail("non-standard JSON constant %s" % name)


def check_jsonl(path, expected):
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # raises on invalid UTF-8
    if text and not text.endswith("\n"):
        raise Fail("last line has no newline")
    lines = text.splitlines()
    if len(lines) != len(expected):
        raise Fail("%d lines, expected %d" % (len(lines), len(expected)))
    for i, (line, want) in enumerate(zip(lines, expected)):
        got = json.loads(line, object_pairs_hook=list, parse_constant=reject_constant)
        want_pairs = list(want.items())
        if [k for k, _ in got] != [k for k, _ in want_pairs]:
            raise Fail("line %d: keys %r != %r" % (i + 1, [k for k, _ in got], [k for k, _ in want_pairs]))
        for (k, a), (_, b) in zip(got, want_pairs):
            if type(a) is not type(b) or a != b:
                raise Fail("line %d: %r = %r (%s), expected %r (%s)"
                           % (i + 1, k, a, type(a).__name__, b, type(b).__name__))


def main(argv):
    if len(argv) != 4 or argv[1] not in ("tfevents", "jsonl"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[3], encoding="utf-8") as f:
        expected = json.load(f, object_pairs_hook=dict)
    try:
        (check_tfevents if argv[1] == "tfevents" else check_jsonl)(argv[2], expected)
    except (Fail, UnicodeDecodeError, ValueError) as e:
        print("verify_metrics.py %s %s: %s" % (argv[1], argv[2], e), file=sys.stderr)
        return 1
    print("verify_metrics.py %s: %s OK" % (argv[1], argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Verify an `ansinh audit export` file with nothing of ansinh's: Python's json and hashlib only.

    python3 scripts/verify_export.py EXPORT.jsonl [--head SEQ:HASH] [--from SEQ]
    python3 scripts/verify_export.py --national CHECKPOINT.json --shard NAME=EXPORT.jsonl ...

Checks every line of the export (events/README.md, "The audit log format"):
  - seqs are contiguous, from 1 (or from --from for an export made with `--from`),
  - each `hash` is the SHA-256 of the record without `hash` in canonical JSON form
    (sorted keys, no whitespace, UTF-8 not escaped: what RFC 8785 gives for these records),
  - each `prev_hash` is the previous record's `hash` (64 zeros before seq 1),
  - with --head SEQ:HASH (a checkpoint you hold), the record SEQ exists and has that HASH,
    which catches an export cut short.
Prints `OK` and the last (seq, hash), or `FAILED at seq N: ...` and exits with status 1.

With --national, checks a national checkpoint (events/README.md, "The national checkpoint"):
its `hash` is the SHA-256 of the record without `hash` in the same canonical form, and for each
shard it names, the export given for it with --shard (made from seq 1) verifies as above with
the shard's (seq, hash) as the expected head. Names the first shard, by name, that fails.
"""

import argparse
import hashlib
import json
import sys

GENESIS = "0" * 64
MEMBERS = {"seq", "prev_hash", "event", "hash"}


class Bad(Exception):
    def __init__(self, seq, what):
        super().__init__(f"seq {seq}: {what}")
        self.seq, self.what = seq, what


def no_floats(text):
    raise ValueError(f"number {text} is not an integer: amounts are strings, and no float may appear")


def no_constants(text):
    raise ValueError(f"{text} is not JSON")


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify(path, first_seq, head):
    expected, prev, last, anchor = first_seq, (GENESIS if first_seq == 1 else None), None, None
    with open(path, "rb") as export:
        for line_no, line in enumerate(export, 1):
            try:
                record = json.loads(line.decode("utf-8"), parse_float=no_floats, parse_constant=no_constants)
            except (UnicodeDecodeError, ValueError) as e:
                raise Bad(expected, f"line {line_no} is not a JSON record ({e})")
            if not isinstance(record, dict) or set(record) != MEMBERS:
                raise Bad(expected, f"line {line_no} is not an audit record (members must be exactly {sorted(MEMBERS)})")
            seq = record["seq"]
            if type(seq) is not int:
                raise Bad(expected, f"line {line_no}: seq is not an integer")
            if seq != expected:
                kind = "records deleted or out of order" if seq > expected else "records repeated or out of order"
                raise Bad(expected, f"line {line_no} holds seq {seq} where seq {expected} was expected ({kind})")
            stated = record.pop("hash")
            actual = hashlib.sha256(canonical(record)).hexdigest()
            if actual != stated:
                raise Bad(seq, f"hash mismatch: the record says {stated}, its content hashes to {actual} (changed after it was sealed)")
            if prev is None:
                anchor = record["prev_hash"]
            elif record["prev_hash"] != prev:
                raise Bad(seq, f"prev_hash {record['prev_hash']} does not link to the hash of seq {seq - 1} ({prev})")
            if head and head[0] == seq and head[1] != stated:
                raise Bad(seq, f"the expected head has hash {head[1]}, the record has {stated}")
            prev, last, expected = stated, seq, seq + 1
    if last is None:
        raise Bad(first_seq, f"{path} holds no records")
    if head and head[0] > last:
        raise Bad(last + 1, f"the export ends at seq {last} but the expected head is at seq {head[0]}: it was cut short")
    return last, prev, anchor


def parse_head(raw):
    seq, _, digest = raw.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise argparse.ArgumentTypeError(f"{raw!r}: expected SEQ:HASH (64 lowercase hex digits)")
    return int(seq), digest


NATIONAL_MEMBERS = {"kind", "v", "namespace", "taken_at", "shards", "hash"}


class BadRecord(Exception):
    pass


def read_national(path):
    with open(path, "rb") as f:
        try:
            record = json.loads(f.read().decode("utf-8"), parse_float=no_floats, parse_constant=no_constants)
        except (UnicodeDecodeError, ValueError) as e:
            raise BadRecord(f"not a JSON record ({e})")
    if not isinstance(record, dict) or set(record) != NATIONAL_MEMBERS:
        raise BadRecord(f"members must be exactly {sorted(NATIONAL_MEMBERS)}")
    if record["kind"] != "ansinh.national_checkpoint" or record["v"] != 1:
        raise BadRecord("not a national checkpoint of version 1 (kind, v)")
    shards = record["shards"]
    if not isinstance(shards, list) or not shards:
        raise BadRecord("shards is not a non-empty list")
    names = []
    for s in shards:
        if not isinstance(s, dict) or set(s) != {"name", "seq", "hash"} or not isinstance(s["name"], str):
            raise BadRecord("each shard must be exactly {name, seq, hash}")
        if type(s["seq"]) is not int or s["seq"] < 1:
            raise BadRecord(f"shard {s['name']}: seq is not an integer of 1 or more")
        if not isinstance(s["hash"], str) or len(s["hash"]) != 64 or any(c not in "0123456789abcdef" for c in s["hash"]):
            raise BadRecord(f"shard {s['name']}: hash is not 64 lowercase hex digits")
        names.append(s["name"])
    if names != sorted(set(names)):
        raise BadRecord("shards are not sorted by name with each once")
    stated = record.pop("hash")
    actual = hashlib.sha256(canonical(record)).hexdigest()
    if actual != stated:
        raise BadRecord(f"its hash says {stated}, its content hashes to {actual}: changed after it was taken")
    return record, stated


def national(args):
    try:
        record, digest = read_national(args.national)
    except BadRecord as bad:
        print(f"FAILED: {args.national} is not a valid national checkpoint: {bad}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot read {args.national}: {e}", file=sys.stderr)
        return 2
    exports = {}
    for raw in args.shard:
        name, _, path = raw.partition("=")
        if not name or not path or name in exports:
            print(f"--shard {raw!r}: expected NAME=EXPORT.jsonl, each shard once", file=sys.stderr)
            return 2
        exports[name] = path
    named = {s["name"] for s in record["shards"]}
    unknown = sorted(set(exports) - named)
    if unknown:
        print(f"--shard: the checkpoint holds no shard named {', '.join(unknown)}", file=sys.stderr)
        return 2
    print(f"national checkpoint of {record['namespace']} taken at {record['taken_at']}: hash {digest} is its content's")
    failed = []
    for s in record["shards"]:
        name = s["name"]
        if name not in exports:
            print(f"shard {name}: NOT VERIFIED: no --shard {name}=EXPORT.jsonl given")
            failed.append(name)
            continue
        try:
            last, _, _ = verify(exports[name], 1, (s["seq"], s["hash"]))
        except Bad as bad:
            print(f"shard {name}: FAILED at seq {bad.seq}: {bad.what}")
            failed.append(name)
            continue
        except OSError as e:
            print(f"shard {name}: NOT VERIFIED: cannot read {exports[name]}: {e}")
            failed.append(name)
            continue
        print(f"shard {name}: OK  seq {s['seq']} hash {s['hash']} is on its chain (export ends at seq {last})")
    if failed:
        print(f"national: FAILED: first failing shard {failed[0]} ({len(failed)} of {len(record['shards'])})", file=sys.stderr)
        return 1
    print(f"national: all {len(record['shards'])} shards OK")
    print("OK")
    return 0


def main():
    if "--national" in sys.argv[1:]:
        parser = argparse.ArgumentParser(description="Verify an ansinh national checkpoint against the shards' exports independently.")
        parser.add_argument("--national", required=True, help="the record written by `ansinh audit national-checkpoint`")
        parser.add_argument("--shard", action="append", default=[], help="NAME=EXPORT.jsonl: a whole export (from seq 1) of that shard")
        return national(parser.parse_args())
    parser = argparse.ArgumentParser(description="Verify an ansinh audit export (JSON Lines) independently.")
    parser.add_argument("export", help="the file written by `ansinh audit export`")
    parser.add_argument("--head", type=parse_head, help="SEQ:HASH of a checkpoint held elsewhere; the export must pass through it")
    parser.add_argument("--from", dest="first", type=int, default=1, help="the export starts at this seq (made with --from); its first prev_hash is then taken on trust")
    args = parser.parse_args()
    if args.first < 1:
        parser.error("--from must be 1 or more")
    try:
        last, digest, anchor = verify(args.export, args.first, args.head)
    except Bad as bad:
        print(f"FAILED at seq {bad.seq}: {bad.what}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot read {args.export}: {e}", file=sys.stderr)
        return 2
    if anchor is not None:
        print(f"note: seq {args.first}'s prev_hash {anchor} is taken on trust; compare it with seq {args.first - 1} of an export you hold")
    if args.head:
        print(f"expected head seq {args.head[0]} is on the chain")
    print(f"head  seq {last}  hash {digest}")
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

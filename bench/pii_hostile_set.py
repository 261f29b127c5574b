#!/usr/bin/env python3
"""Turns the hand-written hostile PII set (bench/pii_hostile.txt) into the JSONL labelled set that
tests/helpers/pii_eval.c scores: one {"text", "entities": [{"type", "start", "end"}], "case"} per
case, with byte offsets into the UTF-8 text.
  bench/pii_hostile_set.py [--in bench/pii_hostile.txt] --out SET.jsonl"""
import argparse
import json
import re
import sys
from pathlib import Path

ESCAPE = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}|\\t|\\r|\\\\")
ENTITY = re.compile(r"⟦([A-Z_]+)\|(.*?)⟧", re.S)


def unescape(s):
    def one(m):
        if m.group(1):
            return chr(int(m.group(1), 16))
        return {"\\t": "\t", "\\r": "\r", "\\\\": "\\"}[m.group(0)]

    return ESCAPE.sub(one, s)


def parse_case(name, body):
    text, entities, pos = b"", [], 0
    for m in ENTITY.finditer(body):
        text += unescape(body[pos:m.start()]).encode()
        value = unescape(m.group(2)).encode()
        entities.append({"type": m.group(1), "start": len(text), "end": len(text) + len(value)})
        text += value
        pos = m.end()
    text += unescape(body[pos:]).encode()
    if "⟦" in text.decode() or "⟧" in text.decode():
        sys.exit(f"pii_hostile_set: case '{name}' has an unbalanced entity marker")
    return {"case": name, "text": text.decode(), "entities": entities}


def cases(source):
    name, lines = None, []
    for line in source.splitlines():
        if line.startswith(";;"):
            continue
        if line.startswith("=== "):
            if name is not None:
                yield name, "\n".join(lines).strip("\n")
            name, lines = line[4:].strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        yield name, "\n".join(lines).strip("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="source", default=str(Path(__file__).with_name("pii_hostile.txt")))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    records = [parse_case(n, b) for n, b in cases(Path(args.source).read_text(encoding="utf-8"))]
    with open(args.out, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    n_entities = sum(len(r["entities"]) for r in records)
    print(f"{len(records)} texts, {n_entities} entities", file=sys.stderr)


if __name__ == "__main__":
    main()

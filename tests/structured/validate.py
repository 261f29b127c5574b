#!/usr/bin/env python3
"""Validates generated JSON against its schema with the jsonschema package (an implementation
independent of edgellm's converter). Usage: validate.py SCHEMA.json OUTPUT.txt
Exit 0 when OUTPUT parses as JSON and validates (formats checked where the package can)."""
import json
import sys

import jsonschema


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    with open(sys.argv[2], encoding="utf-8") as f:
        text = f.read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        print(f"not JSON ({e}): {text!r}")
        return 1
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    try:
        jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator,
                            format_checker=checker)
    except jsonschema.ValidationError as e:
        print(f"does not validate: {e.message}: {text!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The same comparison as check.mjs with Python's Jinja2 configured as transformers configures it
for apply_chat_template (sandboxed, trim_blocks, lstrip_blocks, loop controls, raise_exception,
strftime_now, and its own tojson). This is the renderer models were trained with, so it also
covers the cases where @huggingface/jinja behaves like JavaScript rather than Python.

usage: python3 check_jinja2.py EDGELLM SHARED_DIR
"""
import json
import os
import subprocess
import sys
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

REFERENCE = "jinja2"
HERE = os.path.dirname(os.path.abspath(__file__))


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = tojson
    return env


def token_text(t):
    if t is None:
        return ""
    return t if isinstance(t, str) else t.get("content", "")


def load(t, shared):
    t = dict(t)
    if "shared" in t:
        with open(os.path.join(shared, t["shared"]), encoding="utf-8") as f:
            cfg = json.load(f)
        t.update(src=cfg["chat_template"], bos=token_text(cfg.get("bos_token")),
                 eos=token_text(cfg.get("eos_token")))
    else:
        with open(os.path.join(HERE, "templates", t["file"]), encoding="utf-8") as f:
            t["src"] = f.read()
    return t


def difference(t, conv, gen):
    """The documented reason this template and its family differ on the conversation, or None."""
    roles = [m["role"] for m in conv["messages"]]
    holds = {
        "no_generation_prompt": lambda: not gen,
        "has_system": lambda: "system" in roles,
        "empty_system": lambda: any(m["role"] == "system" and m["content"] == ""
                                    for m in conv["messages"]),
        "other_roles": lambda: any(r not in ("system", "user", "assistant") for r in roles),
        "has_tools": lambda: "tools" in conv or any("tool_calls" in m for m in conv["messages"]),
    }
    for d in t.get("differences", []):
        if d.get("only") and d["only"] != REFERENCE:
            continue
        when = d["when"]
        if (conv["name"] == when[5:]) if when.startswith("case:") else holds[when]():
            return d["reason"]
    return None


def main():
    edgellm, shared = sys.argv[1], sys.argv[2]
    with open(os.path.join(HERE, "templates.json"), encoding="utf-8") as f:
        templates = [load(t, shared) for t in json.load(f)["templates"]]
    with open(os.path.join(HERE, "conversations.json"), encoding="utf-8") as f:
        conversations = json.load(f)
    env = environment()
    passed = failed = skipped = 0
    for t in templates:
        template = env.from_string(t["src"])
        for conv in conversations:
            for gen in (False, True):
                label = f"{t['name']} / {conv['name']} / add_generation_prompt={gen}"
                if difference(t, conv, gen):
                    skipped += 1
                    continue
                context = {"messages": conv["messages"], "add_generation_prompt": gen,
                           "bos_token": t["bos"], "eos_token": t["eos"]}
                try:
                    # transformers passes tools and documents, None when there are none.
                    expected = template.render(tools=conv.get("tools"), documents=None, **context)
                    error = None
                except jinja2.exceptions.TemplateError as e:
                    expected, error = None, str(e)
                run = subprocess.run([edgellm, "chat", "--format-only", "--template-family",
                                      t["family"]],
                                     input=json.dumps({**context, "tools": conv.get("tools")}).encode(),
                                     capture_output=True, check=False)
                if error is not None:
                    ok = run.returncode == 1 and not run.stdout
                    why = f"the template raises ({error}) but edgellm rendered {run.stdout!r}"
                elif run.returncode != 0:
                    ok = False
                    why = f"edgellm failed ({run.stderr.decode().strip()}), jinja2: {expected!r}"
                else:
                    want = expected.encode()
                    ok = want == run.stdout
                    at = next((i for i, (a, b) in enumerate(zip(want, run.stdout)) if a != b),
                              min(len(want), len(run.stdout)))
                    why = (f"first difference at byte {at}\n  jinja2:  {want[max(0, at - 20):at + 40]!r}"
                           f"\n  edgellm: {run.stdout[max(0, at - 20):at + 40]!r}")
                if ok:
                    passed += 1
                else:
                    failed += 1
                    print(f"FAIL {label}: {why}")
    print(f"(Python Jinja2 {jinja2.__version__}; {skipped} documented differences skipped)")
    print(f"chat_templates_jinja2: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

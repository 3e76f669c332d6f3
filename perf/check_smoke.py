#!/usr/bin/env python3
"""Checks one `dcengine load --json` object on stdin: it ran, delivered
something and lost no Durable message (a smoke, not a speed)."""
import json
import sys

r = json.loads(sys.stdin.read())
problems = []
if r.get("tool") != "dcengine load":
    problems.append("not a dcengine load report")
if not r.get("delivered_messages", 0) > 0:
    problems.append("nothing delivered")
if r.get("durable_lost", 1) != 0:
    problems.append(f"{r.get('durable_lost')} Durable messages lost")
if r.get("errors"):
    problems.append(f"errors: {r['errors']}")
if not r.get("ok"):
    problems.append("ok is false")
if problems:
    sys.exit("load smoke failed: " + "; ".join(problems))
print(f"load smoke ok: {r['delivered_messages']} delivered "
      f"({r['delivered_messages_per_s']:.0f}/s), Durable lost 0, {r['backend']} backend")

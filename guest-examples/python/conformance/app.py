"""The conformance step in Python (see ../../CONFORMANCE.md).

componentize-py turns this module into a component of world `step`: the
exported `run` is a method of a class named exactly `WitWorld`; the host
imports are functions of `wit_world.imports.host`; a step error is raised as
`Err(StepError(...))`.
"""

import json
import os
import time

from componentize_py_types import Err
from wit_world import WitWorld as _World
from wit_world.imports import host
from wit_world.imports.types import (
    ErrorCause,
    LogLevel,
    Outcome_Bailed,
    Outcome_Completed,
    Outcome_Suspended,
    StepError,
    Suspension,
)


def _dump(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parse(text):
    """JSON text the host passes in, parsed (echoed back as a string if it is not JSON)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error(code, message, details=None, retryable=False, causes=()):
    details = None if details is None else _dump(details)
    return Err(StepError(code, message, details, retryable, list(causes)))


def _field(obj, key, zero):
    if isinstance(obj, dict) and key in obj:
        return obj[key]
    return zero


def transform(data, ctx):
    state = _parse(host.get_state())
    if not isinstance(state, dict):
        state = {}
    count = _field(state, "count", 0) + 1
    state["count"] = count
    host.set_state(_dump(state))
    n = _field(data, "n", 0)
    host.emit("transformed", _dump({"n": n}))
    text = _field(data, "text", "")
    host.log(LogLevel.INFO, f"transformed {text}")
    upper = "".join(c.upper() if "a" <= c <= "z" else c for c in text)
    return Outcome_Completed(_dump({"text": upper, "n": n * 2, "count": count}))


def fail(data, ctx):
    raise _error(
        "declined",
        "card declined",
        {"reason": "insufficient-funds"},
        causes=[
            ErrorCause("bank", "bank said no", None),
            ErrorCause("network", "timed out", _dump({"ms": 30})),
        ],
    )


def flaky(data, ctx):
    until = _field(data, "until", 0)
    if ctx.attempt < until:
        raise _error("transient", f"attempt {ctx.attempt} of {until}", retryable=True)
    return Outcome_Completed(_dump({"attempt": ctx.attempt}))


def approve(data, ctx):
    if ctx.resume_payload is None:
        payload = _dump({"amount": _field(data, "amount", 0)})
        return Outcome_Suspended(Suspension(payload, ["manager"]))
    resume = _parse(ctx.resume_payload)
    return Outcome_Completed(
        _dump(
            {
                "approved": _field(resume, "approved", False),
                "by": _field(resume, "by", ""),
                "asked": _parse(ctx.suspend_payload),
            }
        )
    )


def bail(data, ctx):
    return Outcome_Bailed(_dump(_field(data, "output", None)))


def context(data, ctx):
    return Outcome_Completed(
        _dump(
            {
                "step_path": ctx.step_path,
                "attempt": ctx.attempt,
                "key": ctx.idempotency_key,
                "iteration": ctx.iteration,
                "result": _parse(host.step_result(_field(data, "of", ""))),
                "workflow_input": _parse(host.workflow_input()),
            }
        )
    )


def probe(data, ctx):
    # The standard library only: each call below goes through WASI
    # (stdout, wall and monotonic clocks, random, environment).
    print("probe from python", flush=True)
    return Outcome_Completed(
        _dump(
            {
                "lang": "python",
                "wall_ms": time.time_ns() // 1_000_000,
                "mono_ms": time.monotonic_ns() // 1_000_000,
                "random": os.urandom(16).hex(),
                "env": len(os.environ),
            }
        )
    )


def sleep(data, ctx):
    # The standard library's blocking sleep (a WASI clock pollable, or
    # poll_oneoff, under CPython's wasi-libc).
    ms = _field(data, "ms", 0)
    via = _field(data, "via", "")
    if via != "":
        raise _error("unknown-via", f"unknown via {via}")
    time.sleep(max(ms, 0) / 1000)
    return Outcome_Completed(_dump({"slept_ms": ms}))


ACTIONS = {
    "transform": transform,
    "fail": fail,
    "flaky": flaky,
    "approve": approve,
    "bail": bail,
    "context": context,
    "probe": probe,
    "sleep": sleep,
}


class WitWorld(_World):
    def run(self, input, ctx):
        data = _parse(input)
        action = _field(data, "action", "")
        if action == "echo":
            return Outcome_Completed(input)
        handler = ACTIONS.get(action) if isinstance(action, str) else None
        if handler is None:
            raise _error("unknown-action", f"unknown action {action}")
        return handler(data, ctx)

"""`{{name}}`: a weft step in Python (world `step` of wit/step.wit).

Build with ./build.sh (componentize-py 0.25.1), run with
`weft run workflow.toml --input '{"name": "Ada"}'`.

`run` returns an outcome: `Outcome_Completed(json_text)`,
`Outcome_Suspended(Suspension(payload, resume_labels))` (pauses the run until
`weft resume`; it runs again with `ctx.resume_payload` set) or
`Outcome_Bailed(json_text)` (ends the workflow now). A step error is raised:
`raise Err(StepError(code, message, details, retryable, causes))` (retried
when retryable and the manifest's retry policy allow). `host.get_state`,
`host.set_state`, `host.emit`, `host.log` and `host.step_result` reach the run.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import LogLevel, Outcome_Completed, StepContext, StepError


class WitWorld(wit_world.WitWorld):
    def run(self, input: str, ctx: StepContext) -> wit_world.types.Outcome:
        try:
            data = json.loads(input)
        except ValueError as e:
            raise Err(StepError("invalid-input", f"the input is not JSON: {e}", None, False, []))
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str):
            name = "world"
        host.log(LogLevel.INFO, f"greeting {name} (attempt {ctx.attempt})")
        return Outcome_Completed(json.dumps({"greeting": f"Hello, {name}!", "lang": "python"}))

// Package export_wit_world is `{{name}}`: a weft step in Go (world `step` of
// wit/step.wit).
//
// Build with ./build.sh, run with `weft run workflow.toml --input '{"name": "Ada"}'`.
// `wit-bindgen go` writes the bindings into gen/ (module `wit_component`);
// the build puts this file beside them, in gen/export_wit_world/, whose Run
// the generated `main` package exports as `run`.
package export_wit_world

import (
	"encoding/json"
	"fmt"

	"wit_component/weft_step_host"
	types "wit_component/weft_step_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Run runs the step once. `input` is the step's input as JSON text; `ctx`
// tells the run, the step, the attempt, and the resume payload after a
// suspension.
//
// Other outcomes: types.MakeOutcomeSuspended(types.Suspension{Payload, ResumeLabels})
// pauses the run until `weft resume`, types.MakeOutcomeBailed(output) ends the
// workflow now; witTypes.Err[types.Outcome](types.StepError{...}) fails the
// step (retried when Retryable and the manifest's retry policy allow).
// weft_step_host.GetState, SetState, Emit, Log, StepResult and WorkflowInput
// reach the run.
func Run(input string, ctx types.StepContext) witTypes.Result[types.Outcome, types.StepError] {
	var in struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(input), &in); err != nil {
		in.Name = "" // not an object with a string `name`
	}
	if in.Name == "" {
		in.Name = "world"
	}
	weft_step_host.Log(types.LogLevel_Info, fmt.Sprintf("greeting %s (attempt %d)", in.Name, ctx.Attempt))
	output, err := json.Marshal(map[string]string{"greeting": "Hello, " + in.Name + "!", "lang": "go"})
	if err != nil {
		return witTypes.Err[types.Outcome](types.StepError{
			Code: "internal", Message: err.Error(), Details: witTypes.None[string](),
		})
	}
	return witTypes.Ok[types.Outcome, types.StepError](types.MakeOutcomeCompleted(string(output)))
}

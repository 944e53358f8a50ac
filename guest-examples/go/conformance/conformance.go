// Package export_wit_world is `conformance-go`: the conformance guest
// (../../CONFORMANCE.md) in Go.
//
// Built by ../build.sh into ../../dist/conformance-go.wasm: `wit-bindgen go`
// writes the bindings of ../../../wit (world `step`), whose generated `main`
// package calls Run here for the exported `run`. `probe` uses the standard
// library only (fmt, time, crypto/rand, os), and so does `sleep` (time.Sleep).
package export_wit_world

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	_ "unsafe" // go:linkname

	"wit_component/weft_step_host"
	. "wit_component/weft_step_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

type result = witTypes.Result[Outcome, StepError]

// Run runs one action, chosen by the input's `action`.
func Run(input string, ctx StepContext) result {
	var in struct {
		Action string          `json:"action"`
		Text   string          `json:"text"`
		N      int64           `json:"n"`
		Until  int64           `json:"until"`
		Amount json.RawMessage `json:"amount"`
		Output json.RawMessage `json:"output"`
		Of     string          `json:"of"`
		Ms     int64           `json:"ms"`
		Via    string          `json:"via"`
	}
	if err := json.Unmarshal([]byte(input), &in); err != nil {
		return fail("invalid-input", "the input does not have the expected shape: "+err.Error(), false)
	}
	switch in.Action {
	case "transform":
		return transform(in.Text, in.N)
	case "fail":
		return witTypes.Err[Outcome](StepError{
			Code:    "declined",
			Message: "card declined",
			Details: witTypes.Some(`{"reason":"insufficient-funds"}`),
			Causes: []ErrorCause{
				{Code: "bank", Message: "bank said no", Details: witTypes.None[string]()},
				{Code: "network", Message: "timed out", Details: witTypes.Some(`{"ms":30}`)},
			},
		})
	case "flaky":
		if int64(ctx.Attempt) < in.Until {
			return fail("transient", fmt.Sprintf("attempt %d of %d", ctx.Attempt, in.Until), true)
		}
		return complete(struct {
			Attempt uint32 `json:"attempt"`
		}{ctx.Attempt})
	case "approve":
		return approve(in.Amount, ctx)
	case "bail":
		return witTypes.Ok[Outcome, StepError](MakeOutcomeBailed(orNull(in.Output)))
	case "context":
		return describe(in.Of, ctx)
	case "probe":
		return probe()
	case "sleep":
		return sleep(in.Ms, in.Via)
	case "echo":
		return witTypes.Ok[Outcome, StepError](MakeOutcomeCompleted(input))
	default:
		return fail("unknown-action", "unknown action "+in.Action, false)
	}
}

func transform(text string, n int64) result {
	// 1. the state, an object whose keys keep their order
	state, err := parseObject(weft_step_host.GetState())
	if err != nil {
		return fail("invalid-state", "the state is not an object: "+err.Error(), false)
	}
	count := int64(0)
	if raw, ok := state.get("count"); ok {
		if err := json.Unmarshal(raw, &count); err != nil {
			return fail("invalid-state", "`count` is not an integer", false)
		}
	}
	count++
	// 2. the state with `count` + 1, other keys kept
	state.set("count", mustJSON(count))
	if r := weft_step_host.SetState(state.String()); r.IsErr() {
		return fail("state-rejected", r.Err(), false)
	}
	// 3. one custom event, 4. one log line
	weft_step_host.Emit("transformed", marshal(struct {
		N int64 `json:"n"`
	}{n}))
	weft_step_host.Log(LogLevel_Info, "transformed "+text)
	// 5. the output
	upper := []byte(text)
	for i, c := range upper {
		if c >= 'a' && c <= 'z' {
			upper[i] = c - 'a' + 'A'
		}
	}
	return complete(struct {
		Text  string `json:"text"`
		N     int64  `json:"n"`
		Count int64  `json:"count"`
	}{string(upper), n * 2, count})
}

func approve(amount json.RawMessage, ctx StepContext) result {
	if ctx.ResumePayload.IsNone() {
		if amount == nil {
			amount = json.RawMessage("0")
		}
		payload := marshal(struct {
			Amount json.RawMessage `json:"amount"`
		}{amount})
		return witTypes.Ok[Outcome, StepError](MakeOutcomeSuspended(Suspension{
			Payload:      payload,
			ResumeLabels: []string{"manager"},
		}))
	}
	var resume struct {
		Approved json.RawMessage `json:"approved"`
		By       json.RawMessage `json:"by"`
	}
	if err := json.Unmarshal([]byte(ctx.ResumePayload.Some()), &resume); err != nil {
		return fail("invalid-input", "the resume payload is not an object: "+err.Error(), false)
	}
	if resume.Approved == nil {
		resume.Approved = json.RawMessage("false")
	}
	if resume.By == nil {
		resume.By = json.RawMessage(`""`)
	}
	return complete(struct {
		Approved json.RawMessage `json:"approved"`
		By       json.RawMessage `json:"by"`
		Asked    json.RawMessage `json:"asked"`
	}{resume.Approved, resume.By, optionJSON(ctx.SuspendPayload)})
}

func describe(of string, ctx StepContext) result {
	var iteration *uint32
	if ctx.Iteration.IsSome() {
		it := ctx.Iteration.Some()
		iteration = &it
	}
	return complete(struct {
		StepPath      string          `json:"step_path"`
		Attempt       uint32          `json:"attempt"`
		Key           string          `json:"key"`
		Iteration     *uint32         `json:"iteration"`
		Result        json.RawMessage `json:"result"`
		WorkflowInput json.RawMessage `json:"workflow_input"`
	}{
		ctx.StepPath, ctx.Attempt, ctx.IdempotencyKey, iteration,
		optionJSON(weft_step_host.StepResult(of)),
		json.RawMessage(weft_step_host.WorkflowInput()),
	})
}

// The monotonic clock's reading, as the Go runtime takes it (WASI's
// monotonic clock); the standard library only shows differences of it.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

func probe() result {
	fmt.Println("probe from go")
	var random [16]byte
	if _, err := rand.Read(random[:]); err != nil {
		return fail("probe-failed", "crypto/rand: "+err.Error(), false)
	}
	return complete(struct {
		Lang   string `json:"lang"`
		WallMs int64  `json:"wall_ms"`
		MonoMs int64  `json:"mono_ms"`
		Random string `json:"random"`
		Env    int    `json:"env"`
	}{"go", time.Now().UnixMilli(), nanotime() / 1e6, hex.EncodeToString(random[:]), len(os.Environ())})
}

// sleep sleeps ms milliseconds (none if negative) with time.Sleep: the Go
// runtime parks the goroutine and, with nothing else to run, waits in WASI's
// poll_oneoff on a clock subscription.
func sleep(ms int64, via string) result {
	if via != "" {
		return fail("unknown-via", "unknown via "+via, false)
	}
	time.Sleep(time.Duration(max(ms, 0)) * time.Millisecond)
	return complete(struct {
		SleptMs int64 `json:"slept_ms"`
	}{ms})
}

// ---------------------------------------------------------------- helpers

func fail(code, message string, retryable bool) result {
	return witTypes.Err[Outcome](StepError{
		Code: code, Message: message, Details: witTypes.None[string](), Retryable: retryable,
	})
}

func complete(v any) result {
	return witTypes.Ok[Outcome, StepError](MakeOutcomeCompleted(marshal(v)))
}

// JSON text of v, with `<`, `>` and `&` as they are (encoding/json's
// Marshal would escape them for HTML).
func marshal(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only values of the types above: cannot happen
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func mustJSON(v any) json.RawMessage { return json.RawMessage(marshal(v)) }

func orNull(raw json.RawMessage) string {
	if raw == nil {
		return "null"
	}
	return string(raw)
}

func optionJSON(o witTypes.Option[string]) json.RawMessage {
	if o.IsNone() {
		return json.RawMessage("null")
	}
	return json.RawMessage(o.Some())
}

// object is a JSON object whose members keep their order.
type object struct {
	keys   []string
	values map[string]json.RawMessage
}

// parseObject reads an object (`null` reads as an empty one).
func parseObject(text string) (*object, error) {
	o := &object{values: map[string]json.RawMessage{}}
	dec := json.NewDecoder(strings.NewReader(text))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return o, nil
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		o.set(key, value)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *object) get(key string) (json.RawMessage, bool) {
	v, ok := o.values[key]
	return v, ok
}

func (o *object) set(key string, value json.RawMessage) {
	if _, ok := o.values[key]; !ok {
		o.keys = append(o.keys, key)
	}
	o.values[key] = value
}

func (o *object) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, key := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(marshal(key))
		b.WriteByte(':')
		b.Write(o.values[key])
	}
	b.WriteByte('}')
	return b.String()
}

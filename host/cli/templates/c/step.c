// `{{name}}`: a weft step in C (world `step` of wit/step.wit).
//
// Build with ./build.sh (clang + wasi-libc make a WASI preview1 module; weft
// adapts it at load), run with `weft run workflow.toml --input '{"name": "Ada"}'`.
// The bindings (gen/step.h) come from `wit-bindgen c`.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "step.h"

// Runs the step once. `input` is the step's input, JSON text (not
// NUL-terminated: `input->ptr`, `input->len`); `ctx` tells the run, the step,
// the attempt, and the resume payload after a suspension. Return `true` with
// `*ret` set, or `false` with `*err` set (a step error: code, message,
// optional JSON details, retryable, causes). Strings put into `*ret` or `*err`
// must come from malloc (step_string_dup): the bindings free them after the
// call. This function owns `input` and `ctx`.
//
// Other outcomes: `ret->tag = WEFT_STEP_TYPES_OUTCOME_SUSPENDED` with
// `ret->val.suspended` (payload, resume labels) pauses the run until `weft
// resume`; `WEFT_STEP_TYPES_OUTCOME_BAILED` ends the workflow now. The host:
// weft_step_host_get_state / _set_state / _emit / _log / _step_result /
// _workflow_input (arguments are borrowed; returned strings are yours to free).
bool exports_step_run(step_json_t *input, step_step_context_t *ctx, step_outcome_t *ret,
                      step_step_error_t *err) {
    // stdout is discarded unless the step is granted `stdio`.
    printf("{{name}}: %zu bytes of input, attempt %u\n", input->len, (unsigned)ctx->attempt);
    fflush(stdout);

    step_string_t line;
    step_string_set(&line, "greeting from C");
    weft_step_host_log(WEFT_STEP_TYPES_LOG_LEVEL_INFO, &line);

    // The input is valid JSON (the host checks it): embed it as it is.
    static const char head[] = "{\"greeting\":\"Hello from C!\",\"lang\":\"c\",\"input\":";
    size_t len = sizeof head - 1 + input->len + 1;
    char *output = malloc(len);
    if (!output) {
        memset(err, 0, sizeof *err);
        step_string_dup(&err->code, "out-of-memory");
        step_string_dup(&err->message, "no memory for the output");
        step_json_free(input);
        step_step_context_free(ctx);
        return false;
    }
    memcpy(output, head, sizeof head - 1);
    memcpy(output + sizeof head - 1, input->ptr, input->len);
    output[len - 1] = '}';

    ret->tag = WEFT_STEP_TYPES_OUTCOME_COMPLETED;
    ret->val.completed.ptr = (uint8_t *)output;
    ret->val.completed.len = len;
    step_json_free(input);
    step_step_context_free(ctx);
    return true;
}

// `c-echo`: the `echo` example in C. Completes with its input unchanged, like
// the Rust `echo`, and prints one line to stdout through wasi-libc: the host
// discards it unless the step is granted `stdio`, which puts it in the run log.
// Built by ../build.sh (clang + wasi-libc, bindings from `wit-bindgen c`).

#include <stdio.h>

#include "step.h"

bool exports_step_run(step_json_t *input, step_step_context_t *ctx, step_outcome_t *ret,
                      step_step_error_t *err) {
    (void)err;
    printf("c-echo: %zu bytes, attempt %u\n", input->len, (unsigned)ctx->attempt);
    fflush(stdout);
    // The input's buffer becomes the output's: the bindings free it after
    // the host has copied the result.
    ret->tag = WEFT_STEP_TYPES_OUTCOME_COMPLETED;
    ret->val.completed = *input;
    step_step_context_free(ctx);
    return true;
}

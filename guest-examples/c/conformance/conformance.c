// `conformance-c`: the conformance guest (../../CONFORMANCE.md) in C.
//
// Built by ../build.sh into ../../dist/conformance-c.wasm (clang + wasi-libc,
// bindings from `wit-bindgen c`). The behaviour is chosen by the input's
// `action`; `probe` uses libc only (printf, clock_gettime, getentropy, environ),
// and so does `sleep` (nanosleep, or poll with no descriptors).
//
// JSON: a small reader (a tree allocated from one arena, freed at the end of
// the call) and writer of our own, for these fixed shapes. The reader is
// bounded (nesting depth, input length as given by the host), checks the
// whole RFC 8259 grammar (numbers, escapes, surrogate pairs, no trailing
// text) and never reads past its input: a document it cannot read becomes the
// step error `invalid-input`, never a trap. Numbers keep their text, so a
// value copied from input to output is unchanged.

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "step.h"

extern char **environ;

// ---------------------------------------------------------------- arena

typedef struct block {
    struct block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} block_t;

typedef struct {
    block_t *head;
} arena_t;

static void *arena_alloc(arena_t *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    if (!a->head || a->head->cap - a->head->used < size) {
        size_t cap = size > 16384 ? size : 16384;
        block_t *b = malloc(sizeof(block_t) + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += size;
    return p;
}

static void arena_free(arena_t *a) {
    while (a->head) {
        block_t *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

// ---------------------------------------------------------------- JSON tree

typedef enum { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT } jtype_t;

typedef struct jvalue jvalue_t;
typedef struct jmember jmember_t;

struct jvalue {
    jtype_t type;
    bool boolean;
    const char *text;  // J_NUMBER: its text; J_STRING: decoded UTF-8
    size_t len;        // length of `text`, or number of items / members
    jvalue_t *items;   // J_ARRAY
    jmember_t *members;  // J_OBJECT, in document order
};

struct jmember {
    const char *key;
    size_t key_len;
    jvalue_t value;
};

enum { MAX_DEPTH = 64 };

typedef struct {
    const unsigned char *p, *end;
    arena_t *arena;
    int depth;
} reader_t;

static void skip_ws(reader_t *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool literal(reader_t *r, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return false;
    r->p += n;
    return true;
}

static int hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(reader_t *r, uint32_t *out) {
    if (r->end - r->p < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(r->p[i]);
        if (d < 0) return false;
        v = (v << 4) | (uint32_t)d;
    }
    r->p += 4;
    *out = v;
    return true;
}

static size_t put_utf8(unsigned char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

// A string after its opening quote; the decoded text never is longer than
// the source text, so one allocation of that size suffices.
static bool read_string(reader_t *r, const char **text, size_t *len) {
    const unsigned char *close = r->p;
    while (close < r->end && *close != '"') close += (*close == '\\' && close + 1 < r->end) ? 2 : 1;
    if (close >= r->end) return false;
    unsigned char *out = arena_alloc(r->arena, (size_t)(close - r->p) + 1);
    if (!out) return false;
    size_t n = 0;
    while (r->p < close) {
        unsigned char c = *r->p++;
        if (c < 0x20) return false;
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        if (r->p >= close) return false;
        unsigned char e = *r->p++;
        switch (e) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!read_hex4(r, &cp)) return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t low;
                if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u') return false;
                r->p += 2;
                if (!read_hex4(r, &low) || low < 0xDC00 || low > 0xDFFF) return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            n += put_utf8(out + n, cp);
            break;
        }
        default: return false;
        }
    }
    r->p = close + 1;
    out[n] = 0;
    *text = (const char *)out;
    *len = n;
    return true;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool read_number(reader_t *r, jvalue_t *v) {
    const unsigned char *start = r->p;
    if (r->p < r->end && *r->p == '-') r->p++;
    if (r->p >= r->end || !is_digit(*r->p)) return false;
    if (*r->p == '0') r->p++;
    else
        while (r->p < r->end && is_digit(*r->p)) r->p++;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (r->p >= r->end || !is_digit(*r->p)) return false;
        while (r->p < r->end && is_digit(*r->p)) r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
        if (r->p >= r->end || !is_digit(*r->p)) return false;
        while (r->p < r->end && is_digit(*r->p)) r->p++;
    }
    // Copied: the text parsed may be freed before the value is used
    // (`parse_owned`), so a number must not point into it.
    size_t len = (size_t)(r->p - start);
    char *copy = arena_alloc(r->arena, len + 1);
    if (!copy) return false;
    memcpy(copy, start, len);
    copy[len] = '\0';
    v->type = J_NUMBER;
    v->text = copy;
    v->len = len;
    return true;
}

static bool read_value(reader_t *r, jvalue_t *v);

// Items are read into a growing temporary array, then copied to the arena.
static bool read_array(reader_t *r, jvalue_t *v) {
    size_t len = 0, cap = 0;
    jvalue_t *tmp = NULL;
    bool ok = false;
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        ok = true;
        goto done;
    }
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            jvalue_t *n = realloc(tmp, ncap * sizeof *n);
            if (!n) goto done;
            tmp = n;
            cap = ncap;
        }
        if (!read_value(r, &tmp[len])) goto done;
        len++;
        skip_ws(r);
        if (r->p >= r->end) goto done;
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        if (*r->p != ']') goto done;
        r->p++;
        ok = true;
        break;
    }
done:
    if (ok && len) {
        v->items = arena_alloc(r->arena, len * sizeof *v->items);
        if (v->items) memcpy(v->items, tmp, len * sizeof *v->items);
        else ok = false;
    }
    free(tmp);
    v->type = J_ARRAY;
    v->len = len;
    return ok;
}

static bool read_object(reader_t *r, jvalue_t *v) {
    size_t len = 0, cap = 0;
    jmember_t *tmp = NULL;
    bool ok = false;
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        ok = true;
        goto done;
    }
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            jmember_t *n = realloc(tmp, ncap * sizeof *n);
            if (!n) goto done;
            tmp = n;
            cap = ncap;
        }
        skip_ws(r);
        if (r->p >= r->end || *r->p != '"') goto done;
        r->p++;
        if (!read_string(r, &tmp[len].key, &tmp[len].key_len)) goto done;
        skip_ws(r);
        if (r->p >= r->end || *r->p != ':') goto done;
        r->p++;
        if (!read_value(r, &tmp[len].value)) goto done;
        len++;
        skip_ws(r);
        if (r->p >= r->end) goto done;
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        if (*r->p != '}') goto done;
        r->p++;
        ok = true;
        break;
    }
done:
    if (ok && len) {
        v->members = arena_alloc(r->arena, len * sizeof *v->members);
        if (v->members) memcpy(v->members, tmp, len * sizeof *v->members);
        else ok = false;
    }
    free(tmp);
    v->type = J_OBJECT;
    v->len = len;
    return ok;
}

static bool read_value(reader_t *r, jvalue_t *v) {
    memset(v, 0, sizeof *v);
    skip_ws(r);
    if (r->p >= r->end) return false;
    switch (*r->p) {
    case 'n': v->type = J_NULL; return literal(r, "null");
    case 't': v->type = J_BOOL; v->boolean = true; return literal(r, "true");
    case 'f': v->type = J_BOOL; return literal(r, "false");
    case '"':
        r->p++;
        v->type = J_STRING;
        return read_string(r, &v->text, &v->len);
    case '[':
    case '{': {
        if (r->depth >= MAX_DEPTH) return false;
        bool object = *r->p == '{';
        r->p++;
        r->depth++;
        bool ok = object ? read_object(r, v) : read_array(r, v);
        r->depth--;
        return ok;
    }
    default: return read_number(r, v);
    }
}

// Parses all of `text` (one value, surrounded by whitespace at most).
static bool parse(arena_t *arena, const uint8_t *text, size_t len, jvalue_t *out) {
    reader_t r = {.p = text, .end = text + len, .arena = arena, .depth = 0};
    if (!read_value(&r, out)) return false;
    skip_ws(&r);
    return r.p == r.end;
}

static const jvalue_t *get(const jvalue_t *object, const char *key) {
    if (!object || object->type != J_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < object->len; i++)
        if (object->members[i].key_len == n && memcmp(object->members[i].key, key, n) == 0)
            return &object->members[i].value;
    return NULL;
}

// An integer number that fits an int64 (no fraction, no exponent).
static bool as_int(const jvalue_t *v, int64_t *out) {
    if (!v || v->type != J_NUMBER || v->len == 0 || v->len > 20) return false;
    char buf[24];
    memcpy(buf, v->text, v->len);
    buf[v->len] = 0;
    for (size_t i = (buf[0] == '-'); i < v->len; i++)
        if (!is_digit((unsigned char)buf[i])) return false;
    errno = 0;
    char *end;
    long long n = strtoll(buf, &end, 10);
    if (errno != 0 || *end != 0) return false;
    *out = n;
    return true;
}

// ---------------------------------------------------------------- writer

typedef struct {
    char *data;
    size_t len, cap;
    bool failed;  // out of memory: the text is incomplete
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
    if (b->failed) return;
    if (n > SIZE_MAX - b->len - 1) {
        b->failed = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static void putf(buf_t *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) b->failed = true;
    else put(b, tmp, (size_t)n);
}

static void put_string(buf_t *b, const char *s, size_t n) {
    put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        if (esc) {
            put(b, s + i - run, run);
            run = 0;
            puts_(b, esc);
        } else {
            run++;
        }
    }
    put(b, s + n - run, run);
    put(b, "\"", 1);
}

static void put_key(buf_t *b, const char *key) {
    put_string(b, key, strlen(key));
    put(b, ":", 1);
}

static void put_value(buf_t *b, const jvalue_t *v) {
    if (!v) {
        puts_(b, "null");
        return;
    }
    switch (v->type) {
    case J_NULL: puts_(b, "null"); break;
    case J_BOOL: puts_(b, v->boolean ? "true" : "false"); break;
    case J_NUMBER: put(b, v->text, v->len); break;
    case J_STRING: put_string(b, v->text, v->len); break;
    case J_ARRAY:
        put(b, "[", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) put(b, ",", 1);
            put_value(b, &v->items[i]);
        }
        put(b, "]", 1);
        break;
    case J_OBJECT:
        put(b, "{", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) put(b, ",", 1);
            put_string(b, v->members[i].key, v->members[i].key_len);
            put(b, ":", 1);
            put_value(b, &v->members[i].value);
        }
        put(b, "}", 1);
        break;
    }
}

// ---------------------------------------------------------------- results

// Moves the text of `b` into a WIT string (the bindings free it after the
// call); false if it is incomplete.
static bool take(buf_t *b, step_string_t *out) {
    if (b->failed || !b->data) {
        free(b->data);
        *b = (buf_t){0};
        return false;
    }
    out->ptr = (uint8_t *)b->data;
    out->len = b->len;
    *b = (buf_t){0};
    return true;
}

static void set_error(step_step_error_t *err, const char *code, const char *message, bool retryable) {
    memset(err, 0, sizeof *err);
    step_string_dup(&err->code, code);
    step_string_dup(&err->message, message);
    err->retryable = retryable;
}

static bool fail(step_step_error_t *err, const char *code, const char *message) {
    set_error(err, code, message, false);
    return false;
}

static bool out_of_memory(step_step_error_t *err) {
    return fail(err, "out-of-memory", "the output could not be allocated");
}

static bool complete(buf_t *b, step_outcome_t *ret, step_step_error_t *err) {
    ret->tag = WEFT_STEP_TYPES_OUTCOME_COMPLETED;
    if (!take(b, &ret->val.completed)) return out_of_memory(err);
    return true;
}

// A host string read as JSON into `out` (freed here).
static bool parse_owned(arena_t *arena, step_string_t *text, jvalue_t *out) {
    bool ok = parse(arena, text->ptr, text->len, out);
    step_string_free(text);
    return ok;
}

// ---------------------------------------------------------------- actions

static bool do_transform(arena_t *arena, const jvalue_t *input, step_outcome_t *ret,
                         step_step_error_t *err) {
    const jvalue_t *text = get(input, "text");
    const char *s = text && text->type == J_STRING ? text->text : "";
    size_t s_len = text && text->type == J_STRING ? text->len : 0;
    if (text && text->type != J_STRING) return fail(err, "invalid-input", "`text` is not a string");
    int64_t n = 0;
    const jvalue_t *nv = get(input, "n");
    if (nv && !as_int(nv, &n)) return fail(err, "invalid-input", "`n` is not an integer");
    if (n > INT64_MAX / 2 || n < INT64_MIN / 2) return fail(err, "invalid-input", "`n` is too large");

    // 1. the state, an object
    step_string_t state_text;
    weft_step_host_get_state(&state_text);
    jvalue_t state;
    if (!parse_owned(arena, &state_text, &state)) return fail(err, "invalid-state", "the state is not JSON");
    if (state.type == J_NULL) state = (jvalue_t){.type = J_OBJECT};
    if (state.type != J_OBJECT) return fail(err, "invalid-state", "the state is not an object");
    int64_t count = 0;
    const jvalue_t *cv = get(&state, "count");
    if (cv && !as_int(cv, &count)) return fail(err, "invalid-state", "`count` is not an integer");
    if (count == INT64_MAX) return fail(err, "invalid-state", "`count` is too large");
    count++;

    // 2. the state with `count` + 1, other keys kept in their order
    buf_t b = {0};
    put(&b, "{", 1);
    bool seen = false;
    for (size_t i = 0; i < state.len; i++) {
        const jmember_t *m = &state.members[i];
        if (i) put(&b, ",", 1);
        put_string(&b, m->key, m->key_len);
        put(&b, ":", 1);
        if (m->key_len == 5 && memcmp(m->key, "count", 5) == 0) {
            putf(&b, "%" PRId64, count);
            seen = true;
        } else {
            put_value(&b, &m->value);
        }
    }
    if (!seen) {
        if (state.len) put(&b, ",", 1);
        put_key(&b, "count");
        putf(&b, "%" PRId64, count);
    }
    put(&b, "}", 1);
    step_string_t new_state, refused;
    if (!take(&b, &new_state)) return out_of_memory(err);
    bool accepted = weft_step_host_set_state(&new_state, &refused);
    step_string_free(&new_state);
    if (!accepted) {
        set_error(err, "state-rejected", "", false);
        step_string_free(&err->message);
        err->message = refused;  // moved into the error
        return false;
    }

    // 3. one custom event
    putf(&b, "{\"n\":%" PRId64 "}", n);
    step_string_t kind, data;
    step_string_set(&kind, "transformed");
    if (!take(&b, &data)) return out_of_memory(err);
    weft_step_host_emit(&kind, &data);
    step_string_free(&data);

    // 4. one log line
    puts_(&b, "transformed ");
    put(&b, s, s_len);
    step_string_t line;
    if (!take(&b, &line)) return out_of_memory(err);
    weft_step_host_log(WEFT_STEP_TYPES_LOG_LEVEL_INFO, &line);
    step_string_free(&line);

    // 5. the output
    char *upper = arena_alloc(arena, s_len + 1);
    if (!upper) return out_of_memory(err);
    for (size_t i = 0; i < s_len; i++)
        upper[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 'a' + 'A') : s[i];
    put(&b, "{", 1);
    put_key(&b, "text");
    put_string(&b, upper, s_len);
    putf(&b, ",\"n\":%" PRId64 ",\"count\":%" PRId64 "}", n * 2, count);
    return complete(&b, ret, err);
}

static void set_cause(weft_step_types_error_cause_t *cause, const char *code, const char *message,
                      const char *details) {
    memset(cause, 0, sizeof *cause);
    step_string_dup(&cause->code, code);
    step_string_dup(&cause->message, message);
    if (details) {
        cause->details.is_some = true;
        step_string_dup(&cause->details.val, details);
    }
}

static bool do_fail(step_step_error_t *err) {
    set_error(err, "declined", "card declined", false);
    err->details.is_some = true;
    step_string_dup(&err->details.val, "{\"reason\":\"insufficient-funds\"}");
    err->causes.ptr = calloc(2, sizeof *err->causes.ptr);
    if (err->causes.ptr) {
        err->causes.len = 2;
        set_cause(&err->causes.ptr[0], "bank", "bank said no", NULL);
        set_cause(&err->causes.ptr[1], "network", "timed out", "{\"ms\":30}");
    }
    return false;
}

static bool do_flaky(const jvalue_t *input, const step_step_context_t *ctx, step_outcome_t *ret,
                     step_step_error_t *err) {
    int64_t until = 0;
    const jvalue_t *u = get(input, "until");
    if (u && !as_int(u, &until)) return fail(err, "invalid-input", "`until` is not an integer");
    buf_t b = {0};
    if ((int64_t)ctx->attempt < until) {
        putf(&b, "attempt %" PRIu32 " of %" PRId64, ctx->attempt, until);
        set_error(err, "transient", "", true);
        step_string_free(&err->message);
        if (!take(&b, &err->message)) step_string_dup(&err->message, "transient");
        return false;
    }
    putf(&b, "{\"attempt\":%" PRIu32 "}", ctx->attempt);
    return complete(&b, ret, err);
}

static bool do_approve(arena_t *arena, const jvalue_t *input, step_step_context_t *ctx,
                       step_outcome_t *ret, step_step_error_t *err) {
    buf_t b = {0};
    if (!ctx->resume_payload.is_some) {
        const jvalue_t *amount = get(input, "amount");
        put(&b, "{", 1);
        put_key(&b, "amount");
        if (amount) put_value(&b, amount);
        else put(&b, "0", 1);
        put(&b, "}", 1);
        ret->tag = WEFT_STEP_TYPES_OUTCOME_SUSPENDED;
        weft_step_types_suspension_t *s = &ret->val.suspended;
        memset(s, 0, sizeof *s);
        if (!take(&b, &s->payload)) return out_of_memory(err);
        s->resume_labels.ptr = malloc(sizeof *s->resume_labels.ptr);
        if (!s->resume_labels.ptr) {
            step_string_free(&s->payload);
            return out_of_memory(err);
        }
        s->resume_labels.len = 1;
        step_string_dup(&s->resume_labels.ptr[0], "manager");
        return true;
    }
    jvalue_t resume, asked = {.type = J_NULL};
    if (!parse(arena, ctx->resume_payload.val.ptr, ctx->resume_payload.val.len, &resume))
        return fail(err, "invalid-input", "the resume payload is not JSON");
    if (ctx->suspend_payload.is_some &&
        !parse(arena, ctx->suspend_payload.val.ptr, ctx->suspend_payload.val.len, &asked))
        return fail(err, "invalid-input", "the suspend payload is not JSON");
    const jvalue_t *approved = get(&resume, "approved"), *by = get(&resume, "by");
    put(&b, "{", 1);
    put_key(&b, "approved");
    if (approved) put_value(&b, approved);
    else puts_(&b, "false");
    put(&b, ",", 1);
    put_key(&b, "by");
    if (by) put_value(&b, by);
    else puts_(&b, "\"\"");
    put(&b, ",", 1);
    put_key(&b, "asked");
    put_value(&b, &asked);
    put(&b, "}", 1);
    return complete(&b, ret, err);
}

static bool do_bail(const jvalue_t *input, step_outcome_t *ret, step_step_error_t *err) {
    buf_t b = {0};
    put_value(&b, get(input, "output"));
    ret->tag = WEFT_STEP_TYPES_OUTCOME_BAILED;
    if (!take(&b, &ret->val.bailed)) return out_of_memory(err);
    return true;
}

static bool do_context(arena_t *arena, const jvalue_t *input, const step_step_context_t *ctx,
                       step_outcome_t *ret, step_step_error_t *err) {
    const jvalue_t *of = get(input, "of");
    if (of && of->type != J_STRING) return fail(err, "invalid-input", "`of` is not a string");
    step_string_t id, result_text, wf_text;
    id.ptr = (uint8_t *)(of ? of->text : "");
    id.len = of ? of->len : 0;
    jvalue_t result = {.type = J_NULL}, wf_input;
    if (weft_step_host_step_result(&id, &result_text) && !parse_owned(arena, &result_text, &result))
        return fail(err, "invalid-input", "the step result is not JSON");
    weft_step_host_workflow_input(&wf_text);
    if (!parse_owned(arena, &wf_text, &wf_input))
        return fail(err, "invalid-input", "the workflow input is not JSON");

    buf_t b = {0};
    put(&b, "{", 1);
    put_key(&b, "step_path");
    put_string(&b, (const char *)ctx->step_path.ptr, ctx->step_path.len);
    putf(&b, ",\"attempt\":%" PRIu32 ",", ctx->attempt);
    put_key(&b, "key");
    put_string(&b, (const char *)ctx->idempotency_key.ptr, ctx->idempotency_key.len);
    put(&b, ",", 1);
    put_key(&b, "iteration");
    if (ctx->iteration.is_some) putf(&b, "%" PRIu32, ctx->iteration.val);
    else puts_(&b, "null");
    put(&b, ",", 1);
    put_key(&b, "result");
    put_value(&b, &result);
    put(&b, ",", 1);
    put_key(&b, "workflow_input");
    put_value(&b, &wf_input);
    put(&b, "}", 1);
    return complete(&b, ret, err);
}

static int64_t ms_of(const struct timespec *t) {
    return (int64_t)t->tv_sec * 1000 + (int64_t)t->tv_nsec / 1000000;
}

static bool do_probe(step_outcome_t *ret, step_step_error_t *err) {
    printf("probe from c\n");
    fflush(stdout);
    struct timespec wall, mono;
    if (clock_gettime(CLOCK_REALTIME, &wall) != 0 || clock_gettime(CLOCK_MONOTONIC, &mono) != 0)
        return fail(err, "probe-failed", "clock_gettime failed");
    unsigned char random[16];
    if (getentropy(random, sizeof random) != 0) return fail(err, "probe-failed", "getentropy failed");
    size_t env = 0;
    for (char **e = environ; e && *e; e++) env++;

    buf_t b = {0};
    putf(&b, "{\"lang\":\"c\",\"wall_ms\":%" PRId64 ",\"mono_ms\":%" PRId64 ",\"random\":\"",
         ms_of(&wall), ms_of(&mono));
    for (size_t i = 0; i < sizeof random; i++) putf(&b, "%02x", random[i]);
    putf(&b, "\",\"env\":%zu}", env);
    return complete(&b, ret, err);
}

// Sleeps `ms` milliseconds (none if negative) with nanosleep, or with
// `"via": "poll"` with poll() on no descriptors; both become WASI's
// poll_oneoff on a clock subscription.
static bool do_sleep(const jvalue_t *input, step_outcome_t *ret, step_step_error_t *err) {
    int64_t ms = 0;
    const jvalue_t *m = get(input, "ms");
    if (m && !as_int(m, &ms)) return fail(err, "invalid-input", "`ms` is not an integer");
    if (ms > INT32_MAX) return fail(err, "invalid-input", "`ms` is too large");
    int64_t wait = ms > 0 ? ms : 0;
    const jvalue_t *via = get(input, "via");
    const char *how = via && via->type == J_STRING ? via->text : "";
    size_t how_len = via && via->type == J_STRING ? via->len : 0;
    if (how_len == 0) {
        struct timespec left = {.tv_sec = wait / 1000, .tv_nsec = (long)(wait % 1000) * 1000000};
        while (nanosleep(&left, &left) != 0)
            if (errno != EINTR) return fail(err, "sleep-failed", "nanosleep failed");
    } else if (how_len == 4 && memcmp(how, "poll", 4) == 0) {
        if (poll(NULL, 0, (int)wait) < 0) return fail(err, "sleep-failed", "poll failed");
    } else {
        buf_t b = {0};
        puts_(&b, "unknown via ");
        put(&b, how, how_len);
        set_error(err, "unknown-via", "", false);
        step_string_free(&err->message);
        if (!take(&b, &err->message)) step_string_dup(&err->message, "unknown via");
        return false;
    }
    buf_t b = {0};
    putf(&b, "{\"slept_ms\":%" PRId64 "}", ms);
    return complete(&b, ret, err);
}

// ---------------------------------------------------------------- the export

bool exports_step_run(step_json_t *input, step_step_context_t *ctx, step_outcome_t *ret,
                      step_step_error_t *err) {
    arena_t arena = {0};
    jvalue_t in;
    bool ok;
    if (!parse(&arena, input->ptr, input->len, &in)) {
        ok = fail(err, "invalid-input", "the input is not JSON");
        goto done;
    }
    const jvalue_t *action = get(&in, "action");
    const char *name = action && action->type == J_STRING ? action->text : "";
    size_t name_len = action && action->type == J_STRING ? action->len : 0;
#define IS(word) (name_len == sizeof(word) - 1 && memcmp(name, word, name_len) == 0)
    if (IS("echo")) {
        ret->tag = WEFT_STEP_TYPES_OUTCOME_COMPLETED;
        ret->val.completed = *input;  // moved: the bindings free it after the call
        input->ptr = NULL;
        input->len = 0;
        ok = true;
    } else if (IS("transform")) ok = do_transform(&arena, &in, ret, err);
    else if (IS("fail")) ok = do_fail(err);
    else if (IS("flaky")) ok = do_flaky(&in, ctx, ret, err);
    else if (IS("approve")) ok = do_approve(&arena, &in, ctx, ret, err);
    else if (IS("bail")) ok = do_bail(&in, ret, err);
    else if (IS("context")) ok = do_context(&arena, &in, ctx, ret, err);
    else if (IS("probe")) ok = do_probe(ret, err);
    else if (IS("sleep")) ok = do_sleep(&in, ret, err);
    else {
        buf_t b = {0};
        puts_(&b, "unknown action ");
        put(&b, name, name_len);
        set_error(err, "unknown-action", "", false);
        step_string_free(&err->message);
        if (!take(&b, &err->message)) step_string_dup(&err->message, "unknown action");
        ok = false;
    }
#undef IS
done:
    arena_free(&arena);
    step_json_free(input);
    step_step_context_free(ctx);
    return ok;
}

// The conformance step in JavaScript (see ../../CONFORMANCE.md), built by
// componentize-js (SpiderMonkey). The export `run` returns an outcome
// `{ tag, val }` (or a promise of one, which componentize-js resolves by
// running the event loop before the export returns); a step error is a
// thrown plain object; host imports come from 'weft:step/host@0.1.0'; an
// absent option is `undefined`.
import {
  emit,
  getState,
  log,
  setState,
  stepResult,
  workflowInput,
} from 'weft:step/host@0.1.0';
import { getEnvironment } from 'wasi:cli/environment@0.2.3';
import { subscribeDuration } from 'wasi:clocks/monotonic-clock@0.2.3';

/** JSON text the host passes in, parsed (echoed back as a string if it is not JSON). */
function parse(text) {
  if (text === undefined || text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function field(obj, key, zero) {
  return obj !== null && typeof obj === 'object' && !Array.isArray(obj) && key in obj
    ? obj[key]
    : zero;
}

function stepError(code, message, { details, retryable = false, causes = [] } = {}) {
  return {
    code,
    message,
    details: details === undefined ? undefined : JSON.stringify(details),
    retryable,
    causes,
  };
}

const completed = (value) => ({ tag: 'completed', val: JSON.stringify(value) });

function asciiUpper(text) {
  return text.replace(/[a-z]/g, (c) => c.toUpperCase());
}

const actions = {
  transform(data) {
    let state = parse(getState());
    if (state === null || typeof state !== 'object' || Array.isArray(state)) state = {};
    const count = field(state, 'count', 0) + 1;
    state.count = count;
    setState(JSON.stringify(state));
    const n = field(data, 'n', 0);
    emit('transformed', JSON.stringify({ n }));
    const text = field(data, 'text', '');
    log('info', `transformed ${text}`);
    return completed({ text: asciiUpper(text), n: n * 2, count });
  },

  fail() {
    throw stepError('declined', 'card declined', {
      details: { reason: 'insufficient-funds' },
      causes: [
        { code: 'bank', message: 'bank said no', details: undefined },
        { code: 'network', message: 'timed out', details: JSON.stringify({ ms: 30 }) },
      ],
    });
  },

  flaky(data, ctx) {
    const until = field(data, 'until', 0);
    if (ctx.attempt < until) {
      throw stepError('transient', `attempt ${ctx.attempt} of ${until}`, { retryable: true });
    }
    return completed({ attempt: ctx.attempt });
  },

  approve(data, ctx) {
    if (ctx.resumePayload === undefined) {
      return {
        tag: 'suspended',
        val: {
          payload: JSON.stringify({ amount: field(data, 'amount', 0) }),
          resumeLabels: ['manager'],
        },
      };
    }
    const resume = parse(ctx.resumePayload);
    return completed({
      approved: field(resume, 'approved', false),
      by: field(resume, 'by', ''),
      asked: parse(ctx.suspendPayload),
    });
  },

  bail(data) {
    return { tag: 'bailed', val: JSON.stringify(field(data, 'output', null)) };
  },

  context(data, ctx) {
    return completed({
      step_path: ctx.stepPath,
      attempt: ctx.attempt,
      key: ctx.idempotencyKey,
      iteration: ctx.iteration === undefined ? null : ctx.iteration,
      result: parse(stepResult(field(data, 'of', ''))),
      workflow_input: parse(workflowInput()),
    });
  },

  probe() {
    // The platform's own APIs: console (stdout), Date (wall clock),
    // performance (monotonic clock), crypto (random); the environment, for
    // which JavaScript has no API here, straight from wasi:cli/environment.
    console.log('probe from js');
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return completed({
      lang: 'js',
      wall_ms: Date.now(),
      mono_ms: Math.floor(performance.now()),
      random: Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(''),
      env: getEnvironment().length,
    });
  },

  sleep(data) {
    // By default with `setTimeout`: componentize-js runs the event loop
    // inside the export until the promise `run` returns settles, and
    // StarlingMonkey's event loop waits for the timer in WASI (a poll over
    // `wasi:clocks` pollables). `"via": "pollable"` blocks on a
    // `wasi:clocks/monotonic-clock` pollable directly (imported by the JS
    // world, like the environment); `"via": "spin"` busy-waits on
    // `performance.now()` (the monotonic clock: without the `clocks` grant
    // the wall clock behind `Date.now()` stands still at the attempt's
    // start, so a loop on it would never end).
    const ms = field(data, 'ms', 0);
    const via = field(data, 'via', '');
    const wait = Math.max(Math.trunc(ms), 0);
    const slept = completed({ slept_ms: ms });
    if (via === '') {
      return new Promise((resolve) => setTimeout(() => resolve(slept), wait));
    }
    if (via === 'pollable') {
      subscribeDuration(BigInt(wait) * 1000000n).block();
    } else if (via === 'spin') {
      const end = performance.now() + wait;
      while (performance.now() < end) {
        // busy: the epoch deadline stops a step that spins past it
      }
    } else {
      throw stepError('unknown-via', `unknown via ${via}`);
    }
    return slept;
  },
};

export function run(input, ctx) {
  const data = parse(input);
  const action = field(data, 'action', '');
  if (action === 'echo') return { tag: 'completed', val: input };
  if (typeof action !== 'string' || !Object.hasOwn(actions, action)) {
    throw stepError('unknown-action', `unknown action ${action}`);
  }
  return actions[action](data, ctx);
}

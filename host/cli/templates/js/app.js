// `{{name}}`: a weft step in JavaScript (world `step` of wit/step.wit).
//
// Build with ./build.sh (componentize-js 0.23.0, SpiderMonkey), run with
// `weft run workflow.toml --input '{"name": "Ada"}'`.
//
// `run` returns an outcome: `{ tag: 'completed', val: jsonText }`,
// `{ tag: 'suspended', val: { payload, resumeLabels } }` (pauses the run until
// `weft resume`; it runs again with `ctx.resumePayload` set) or
// `{ tag: 'bailed', val: jsonText }` (ends the workflow now). A step error is
// thrown as a plain object `{ code, message, details, retryable, causes }`
// (`details` undefined for none; retried when retryable and the manifest's
// retry policy allow). getState, setState, emit, log and stepResult from
// 'weft:step/host@0.1.0' reach the run. Fields are camelCase; an absent
// option is `undefined`.

import { log } from 'weft:step/host@0.1.0';

export function run(input, ctx) {
  let data;
  try {
    data = JSON.parse(input);
  } catch (e) {
    throw { code: 'invalid-input', message: `the input is not JSON: ${e}`, details: undefined, retryable: false, causes: [] };
  }
  const name = data !== null && typeof data === 'object' && typeof data.name === 'string' ? data.name : 'world';
  log('info', `greeting ${name} (attempt ${ctx.attempt})`);
  return { tag: 'completed', val: JSON.stringify({ greeting: `Hello, ${name}!`, lang: 'js' }) };
}

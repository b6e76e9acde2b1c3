/**
 * The script each wasm thread runs. tfjs-backend-wasm ships the emscripten pthread worker only as
 * a string (its browser build turns it into a blob: URL, which Node's Worker cannot start), so this
 * file evaluates that string in a real CommonJS worker. The string holds newlines inside string
 * literals (tfjs escapes them the same way before making its blob). A direct eval keeps `require`
 * and `__filename` in scope, which the worker code captures for Node.
 */
const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as { wasmWorkerContents: string };
eval(wasmWorkerContents.replace(/\n/g, '\\n'));

#!/usr/bin/env node
// Installs what `npm run bench` needs beyond the package, and says what it installed and where:
//   - onnxruntime-node@<ORT_VERSION> into bench/.work/node_modules (the bench's own folder; not a dependency),
//   - checks that Debian's /usr/bin/python3 has torch (python3-torch, for the ONNX export; scripts/ensure.mjs
//     --bench installs the Debian package before this runs).
// Exits 1 when either is missing afterwards (the bench would skip its onnxruntime comparison).
//   node bench/setup.mjs
import { ensureOnnxruntime, findPython, log } from './common.mjs';

let ok = true;
const python = findPython();
if (python) {
  log(`bench setup: python3-torch ${python.torch} at ${python.py} (exports the ONNX graph)`);
} else {
  log('bench setup: /usr/bin/python3 has no torch: apt-get install python3-torch (`npm run bench` does it as root or with sudo)');
  ok = false;
}
const ort = ensureOnnxruntime();
if (ort.version) log(`bench setup: onnxruntime-node ${ort.version} in bench/.work/node_modules`);
else {
  log(`bench setup: ${ort.error}`);
  ok = false;
}
process.exit(ok ? 0 : 1);

// Plain Node pipeline over CloudWatch Logs envelopes, the way a typical Node
// metering Lambda does it: JSON.parse, Buffer base64, zlib.gunzipSync,
// JSON.parse of each record, a Map of (user, model, day) sums. Prints
// `seconds=<processing CPU time>` (files are read into memory first).
//
//     node baseline.js DIR
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const dir = process.argv[2];
const blobs = fs.readdirSync(dir).sort().map((f) => fs.readFileSync(path.join(dir, f)));
const start = process.cpuUsage();
const totals = new Map();
for (const blob of blobs) {
  const env = JSON.parse(blob);
  const payload = JSON.parse(zlib.gunzipSync(Buffer.from(env.awslogs.data, 'base64')));
  for (const event of payload.logEvents || []) {
    const r = JSON.parse(event.message);
    const meta = r.requestMetadata || {};
    const user = meta.user || ((r.identity || {}).arn || 'unknown').split('/').pop();
    const key = `${user}\u0000${r.modelId}\u0000${(r.timestamp || '').slice(0, 10)}`;
    const i = r.input || {};
    const o = r.output || {};
    let t = totals.get(key);
    if (!t) { t = [0, 0, 0, 0, 0]; totals.set(key, t); }
    t[0] += 1;
    t[1] += i.inputTokenCount || 0;
    t[2] += o.outputTokenCount || 0;
    t[3] += i.cacheReadInputTokenCount || 0;
    t[4] += i.cacheWriteInputTokenCount || 0;
  }
}
const used = process.cpuUsage(start);
const seconds = (used.user + used.system) / 1e6;
console.log(`keys=${totals.size} seconds=${seconds.toFixed(4)}`);

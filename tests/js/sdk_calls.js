// Drives plugNmeet's JavaScript SDK (plugnmeet-sdk-js, from npm) for tests/test_sdk_js.py.
// Usage: node sdk_calls.js SERVER_URL < calls.json, where calls.json is
// [{"method": "createRoom", "params": {...}}, ...]; the key and secret come from
// PLUGNMEET_API_KEY and PLUGNMEET_API_SECRET. Prints the SDK's answers, in order, as one JSON array.
"use strict";
const { PlugNmeet } = require("plugnmeet-sdk-js");

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const calls = JSON.parse(Buffer.concat(chunks).toString());
  const sdk = new PlugNmeet(
    process.argv[2],
    process.env.PLUGNMEET_API_KEY,
    process.env.PLUGNMEET_API_SECRET,
  );
  const answers = [];
  for (const call of calls) {
    const method = sdk[call.method];
    if (typeof method !== "function") throw new Error(`the SDK has no ${call.method}`);
    answers.push(await method.call(sdk, call.params));
  }
  process.stdout.write(JSON.stringify(answers));
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});

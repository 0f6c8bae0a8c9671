// Runs docs/snippets/verify.js on one webhook given as JSON on stdin; prints each verdict.
const { verifyJwt, verifyStandard } = require("../../docs/snippets/verify.js");

const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const input = JSON.parse(Buffer.concat(chunks));
  const body = Buffer.from(input.body_b64, "base64");
  const h = Object.fromEntries(Object.entries(input.headers).map(([k, v]) => [k.toLowerCase(), v]));
  const jwt = verifyJwt(body, h["authorization"], input.api_key, input.api_secret);
  const std = verifyStandard(body, h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"],
    input.webhook_secret);
  console.log(`jwt ${jwt ? "ok" : "FAILED"}`);
  console.log(`standard-webhooks ${std ? "ok" : "FAILED"}`);
  process.exit(jwt && std ? 0 : 1);
});

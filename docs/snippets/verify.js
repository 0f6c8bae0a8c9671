// Verify a roomkeeper webhook in Node (no dependency). `body` is the raw request body as a
// Buffer, never a re-serialised object: both signatures cover its exact bytes.
const crypto = require("crypto");

const equal = (a, b) =>
  Buffer.byteLength(a) === Buffer.byteLength(b) && crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));

// plugNmeet/LiveKit style: Authorization (or Hash-Token) is an HS256 JWT by your API key and
// secret whose `sha256` claim is the base64 SHA-256 of the body.
function verifyJwt(body, token, apiKey, apiSecret) {
  const [head, claims, sig] = String(token).split(".");
  if (!sig) return false;
  const expected = crypto.createHmac("sha256", apiSecret).update(`${head}.${claims}`).digest("base64url");
  if (!equal(expected, sig)) return false;
  const header = JSON.parse(Buffer.from(head, "base64url"));
  const c = JSON.parse(Buffer.from(claims, "base64url"));
  const now = Math.floor(Date.now() / 1000);
  const sha256 = crypto.createHash("sha256").update(body).digest("base64");
  return header.alg === "HS256" && c.iss === apiKey && c.nbf <= now + 10 && c.exp >= now - 10 &&
    equal(sha256, String(c.sha256));
}

// Standard Webhooks: webhook-signature holds "v1,<base64 HMAC-SHA256 of id.timestamp.body>",
// one per secret roomkeeper signs with (space-separated), keyed by the base64 after "whsec_".
function verifyStandard(body, id, timestamp, signatures, secret) {
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false; // replayed or delayed
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const expected = crypto.createHmac("sha256", key)
    .update(Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body])).digest("base64");
  return signatures.split(" ").some((s) => s.startsWith("v1,") && equal(s.slice(3), expected));
}

module.exports = { verifyJwt, verifyStandard };

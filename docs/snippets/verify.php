<?php
// Verify a roomkeeper webhook in PHP (no library needed). $body is the raw request body
// (file_get_contents('php://input')), never a re-encoded copy: both signatures cover its bytes.

// plugNmeet/LiveKit style: Authorization (or Hash-Token) is an HS256 JWT by your API key and
// secret whose `sha256` claim is the base64 SHA-256 of the body.
function roomkeeper_verify_jwt(string $body, string $token, string $apiKey, string $apiSecret): bool
{
    $parts = explode('.', $token);
    if (count($parts) !== 3) {
        return false;
    }
    [$head, $claims, $sig] = $parts;
    $b64url = fn (string $s): string|false => base64_decode(strtr($s, '-_', '+/'), true);
    $expected = hash_hmac('sha256', "$head.$claims", $apiSecret, true);
    if (!hash_equals($expected, (string) $b64url($sig))) {
        return false;
    }
    $header = json_decode((string) $b64url($head), true);
    $claims = json_decode((string) $b64url($claims), true);
    $now = time();
    return is_array($header) && ($header['alg'] ?? '') === 'HS256'
        && is_array($claims) && ($claims['iss'] ?? '') === $apiKey
        && ($claims['nbf'] ?? 0) <= $now + 10 && ($claims['exp'] ?? 0) >= $now - 10
        && hash_equals(base64_encode(hash('sha256', $body, true)), (string) ($claims['sha256'] ?? ''));
}

// Standard Webhooks: webhook-signature holds "v1,<base64 HMAC-SHA256 of id.timestamp.body>",
// one per secret roomkeeper signs with (space-separated), keyed by the base64 after "whsec_".
function roomkeeper_verify_standard(string $body, string $id, string $timestamp, string $signatures, string $secret): bool
{
    if (abs(time() - (int) $timestamp) > 300) {
        return false; // replayed or badly delayed
    }
    $key = base64_decode(substr($secret, strlen('whsec_')), true);
    $expected = base64_encode(hash_hmac('sha256', "$id.$timestamp.$body", (string) $key, true));
    foreach (explode(' ', $signatures) as $candidate) {
        [$version, $sig] = array_pad(explode(',', $candidate, 2), 2, '');
        if ($version === 'v1' && hash_equals($expected, $sig)) {
            return true;
        }
    }
    return false;
}

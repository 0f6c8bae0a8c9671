<?php
// Runs docs/snippets/verify.php on one webhook given as JSON on stdin; prints each verdict.
require __DIR__ . '/../../docs/snippets/verify.php';

$in = json_decode(stream_get_contents(STDIN), true);
$body = base64_decode($in['body_b64'], true);
$h = array_change_key_case($in['headers'], CASE_LOWER);
$jwt = roomkeeper_verify_jwt($body, $h['authorization'], $in['api_key'], $in['api_secret']);
$std = roomkeeper_verify_standard($body, $h['webhook-id'], $h['webhook-timestamp'], $h['webhook-signature'], $in['webhook_secret']);
echo 'jwt ' . ($jwt ? 'ok' : 'FAILED') . "\n";
echo 'standard-webhooks ' . ($std ? 'ok' : 'FAILED') . "\n";
exit($jwt && $std ? 0 : 1);

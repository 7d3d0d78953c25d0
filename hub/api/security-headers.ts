/**
 * Headers every hub HTTP answer carries (dashboard, API, errors, the watch stream):
 * - a strict CSP: only the hub's own script, style and API (`'self'`), nothing inline, no
 *   plugins, no <base> rewrites, no framing, forms only to the hub;
 * - `X-Frame-Options: DENY` for browsers without `frame-ancestors` (clickjacking);
 * - `X-Content-Type-Options: nosniff`: a JSON or text answer is never run as script or style;
 * - `Referrer-Policy: no-referrer`: the hub's address and paths do not leak to other sites.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
].join('; ');

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

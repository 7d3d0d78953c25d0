/**
 * Content negotiation for `Accept-Encoding` (RFC 9110 §12.5.3), only as far as the hub needs it:
 * may this response be gzip-coded? Pure; never throws on a malformed header (it answers no, and
 * identity is always acceptable to a client that sent nonsense).
 */

/** `1`, `0.5`, `0.000`: RFC 9110's qvalue; anything else is malformed. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * True when `gzip` (or its alias `x-gzip`) is listed with a q-value above 0, or, when neither is
 * listed, `*` is, above 0. False for an absent or empty header, `identity`, `gzip;q=0`, and an
 * element whose q-value is malformed (that element is ignored).
 */
export function acceptsGzip(header: string | readonly string[] | undefined): boolean {
  if (header === undefined) return false;
  const text = typeof header === 'string' ? header : header.join(',');
  let gzip: number | undefined;
  let star: number | undefined;
  for (const element of text.split(',')) {
    const [codingRaw = '', ...params] = element.split(';');
    const coding = codingRaw.trim().toLowerCase();
    if (coding !== 'gzip' && coding !== 'x-gzip' && coding !== '*') continue;
    let q = 1;
    for (const p of params) {
      const eq = p.indexOf('=');
      if (eq === -1 || p.slice(0, eq).trim().toLowerCase() !== 'q') continue;
      const v = p.slice(eq + 1).trim();
      q = QVALUE.test(v) ? Number(v) : Number.NaN;
    }
    if (Number.isNaN(q)) continue;
    if (coding === '*') star = Math.max(star ?? 0, q);
    else gzip = Math.max(gzip ?? 0, q);
  }
  return (gzip ?? star ?? 0) > 0;
}

/**
 * The reader side of the /metrics benches (scrape.ts --http, fleet-scrape.ts): one GET as
 * Prometheus sends it (`Accept-Encoding: gzip`, decompressed as it streams in) or identity, timed to
 * the last byte, counting the bytes on the wire, the decompressed bytes and the series as they pass.
 * The body is never kept unless asked (`keep`, for the parse check after the timed part).
 *
 * As a child process (scrape.ts, so TLS and gunzip are not on the hub's event loop):
 *   node --import tsx scripts/bench/lib/scrape-reader.ts URL CA_PEM ROUNDS gzip|identity
 * prints a JSON array of ScrapeResult (the last round parse-checked) on stdout.
 */
import https from 'node:https';
import { pathToFileURL } from 'node:url';
import { createGunzip } from 'node:zlib';

export interface ScrapeResult {
  status: number;
  ms: number;
  /** `content-encoding` of the response ('identity' when absent). */
  encoding: string;
  /** Bytes on the wire (the gzip stream when compressed). */
  wireBytes: number;
  /** Bytes of the text, after decompression. */
  bytes: number;
  /** Lines that are not comments: one per series. */
  series: number;
  /** Set when `keep`: the problems the parse check found (at most 5; empty when the body parses). */
  problems?: string[];
}

export interface ScrapeOptions {
  ca: string;
  gzip: boolean;
  token?: string;
  keep?: boolean;
  timeoutMs?: number;
}

/** Counts lines that do not start with `#` across chunk boundaries, with indexOf (no byte loop). */
function seriesCounter(): { add: (c: Buffer) => void; readonly n: number } {
  let n = 0;
  let atLineStart = true;
  return {
    add(c: Buffer): void {
      if (c.length === 0) return;
      if (atLineStart && c[0] !== 35 && c[0] !== 10) n++;
      for (let i = c.indexOf(10); i !== -1; i = c.indexOf(10, i + 1)) {
        const next = c[i + 1];
        if (next === undefined) break;
        if (next !== 35 && next !== 10) n++;
      }
      atLineStart = c[c.length - 1] === 10;
    },
    get n(): number {
      return n;
    },
  };
}

// A sample line of the text format 0.0.4: name, optional labels, value, optional timestamp.
const SAMPLE =
  /^[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (?:NaN|[+-]?Inf|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?: -?\d+)?$/;
const COMMENT = /^# (?:HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (?:counter|gauge|histogram|summary|untyped))$/;

/** A line-by-line check of the Prometheus text format: every line a sample, a HELP/TYPE comment or empty. */
export function checkPromText(text: string): { series: number; problems: string[] } {
  const problems: string[] = [];
  let series = 0;
  if (!text.endsWith('\n')) problems.push('body does not end with a newline');
  const lines = text.split('\n');
  lines.pop();
  for (const [i, line] of lines.entries()) {
    if (line === '') continue; // allowed between families (prom-client writes them)
    if (line.startsWith('#') ? COMMENT.test(line) : SAMPLE.test(line)) {
      if (!line.startsWith('#')) series++;
    } else if (problems.length < 5) problems.push(`line ${i + 1}: ${JSON.stringify(line.slice(0, 200))}`);
  }
  return { series, problems };
}

/** One GET; resolves when the last (decompressed) byte is in. */
export function scrapeOnce(url: string, o: ScrapeOptions): Promise<ScrapeResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const headers: Record<string, string> = {};
    if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`;
    if (o.gzip) headers['accept-encoding'] = 'gzip';
    const req = https.request(url, { ca: o.ca, agent: false, headers, timeout: o.timeoutMs ?? 120_000 }, (res) => {
      const encoding = res.headers['content-encoding'] ?? 'identity';
      let wireBytes = 0;
      let bytes = 0;
      const series = seriesCounter();
      const kept: Buffer[] = [];
      res.on('data', (c: Buffer) => (wireBytes += c.length));
      const text = encoding === 'gzip' ? res.pipe(createGunzip({ chunkSize: 256 * 1024 })) : res;
      text.on('data', (c: Buffer) => {
        bytes += c.length;
        series.add(c);
        if (o.keep === true) kept.push(c);
      });
      text.on('error', reject);
      res.on('error', reject);
      text.on('end', () => {
        const r: ScrapeResult = { status: res.statusCode ?? 0, ms: performance.now() - t0, encoding, wireBytes, bytes, series: series.n };
        if (o.keep === true) {
          const check = checkPromText(Buffer.concat(kept).toString('utf8'));
          r.problems = check.series === r.series ? check.problems : [...check.problems, `parsed ${check.series} series, counted ${r.series}`];
        }
        resolve(r);
      });
    });
    req.on('timeout', () => req.destroy(new Error('scrape timed out')));
    req.on('error', reject);
    req.end();
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [url = '', ca = '', rounds = '1', mode = 'gzip'] = process.argv.slice(2);
  const out: ScrapeResult[] = [];
  for (let i = 0; i < Number(rounds); i++) {
    out.push(await scrapeOnce(url, { ca, gzip: mode === 'gzip', keep: i === Number(rounds) - 1 }));
    await new Promise((r) => setTimeout(r, 200));
  }
  process.stdout.write(JSON.stringify(out));
}

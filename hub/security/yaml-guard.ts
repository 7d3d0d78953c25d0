import { Lexer, isScalar, visit, type Document } from 'yaml';
import { OrchardError } from '../../protocol/errors.js';

/**
 * Refuses YAML whose nesting would make the `yaml` parser slow or hungry before it runs.
 *
 * Measured on Node 20 with yaml 2.8: the CST parser is superlinear in flow nesting depth — 400k
 * nested `[` (800 KB, under the 1 MiB body limit) take ≈ 6 s of event-loop time and > 800 MB of
 * heap, enough to stall or OOM a hub on a Pi. The composer then fails with a stack overflow
 * anyway, so deep input can never become a valid manifest. The lexer is linear and is the
 * authority on what is structure and what is text (quoted scalars and block scalars come out as
 * single tokens), so counting its flow indicators is exact, not a heuristic, and stops at the
 * first level over the limit: a hostile document costs microseconds.
 *
 * Compact block nesting (`- - - - x`, `? ? ? x`) is bounded per line the same way; nesting by
 * indentation needs n²/2 bytes for n levels, so the body limit already caps it (≈ 1,400 levels).
 *
 * Two more costs, also measured: yaml's own duplicate-key check is quadratic in a mapping's size
 * (20k keys in 190 KB: 2.2 s; 100k keys in 1 MiB: about a minute), so the hub parses with
 * `uniqueKeys: false` and calls assertUniqueKeys (linear) instead; and 1 MiB of dense tokens costs
 * ≈ 2 s and ≈ 450 MB, so a document may carry at most MAX_YAML_TOKENS lexer tokens.
 */

/** Deepest flow nesting (`[`/`{`) accepted; real manifests use < 10. */
export const MAX_YAML_FLOW_DEPTH = 64;
/** Most block indicators (`-`, `?`) on one line; real manifests use 1–2. */
export const MAX_YAML_INDICATORS_PER_LINE = 64;

/** Lexer tokens (scalars, indicators, whitespace runs) accepted in one apply; ≈ 0.5 s and 150 MB at worst. */
export const MAX_YAML_TOKENS = 300_000;

export function assertYamlShape(text: string): void {
  let tokens = 0;
  let depth = 0;
  let perLine = 0;
  let line = 1;
  for (const tok of new Lexer().lex(text)) {
    if (++tokens > MAX_YAML_TOKENS) throw tooDeep(line, `more than ${MAX_YAML_TOKENS} YAML tokens (send fewer or larger values, or JSON)`, 'YAML too large');
    switch (tok) {
      case '[':
      case '{':
        if (++depth > MAX_YAML_FLOW_DEPTH) throw tooDeep(line, `flow collections nested deeper than ${MAX_YAML_FLOW_DEPTH} levels`);
        break;
      case ']':
      case '}':
        if (depth > 0) depth--;
        break;
      case '-':
      case '?':
        if (++perLine > MAX_YAML_INDICATORS_PER_LINE) throw tooDeep(line, `more than ${MAX_YAML_INDICATORS_PER_LINE} nested block indicators on one line`);
        break;
      default:
        if (tok.includes('\n')) {
          perLine = 0;
          for (const ch of tok) if (ch === '\n') line++;
        }
    }
  }
}

/**
 * Refuses a mapping that repeats a key (as the yaml parser would with `uniqueKeys: true`), in
 * time linear in the document. Keys compare as the JavaScript property names they become.
 */
export function assertUniqueKeys(doc: Document.Parsed, index: number): void {
  visit(doc, {
    Map(_key, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue; // collection keys become odd strings that no schema accepts
        const name = String(pair.key.value);
        if (seen.has(name)) {
          const message = `duplicate key ${JSON.stringify(name.slice(0, 80))} in a mapping`;
          throw new OrchardError('ERR_BAD_YAML', `document ${index}: ${message}`, { details: { issues: [{ path: `documents[${index}]`, message }] } });
        }
        seen.add(name);
      }
      return undefined;
    },
  });
}

function tooDeep(line: number, what: string, headline = 'YAML nesting too deep'): OrchardError {
  const message = `${headline} near line ${line}: ${what}`;
  return new OrchardError('ERR_BAD_YAML', message, { details: { issues: [{ path: '(root)', message }] } });
}

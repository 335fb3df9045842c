// Config documents as text: YAML or JSON in, YAML out. Parse errors say where (line:column) and
// why; the YAML we write re-applies to the same state.
import { LineCounter, parseDocument, stringify, type YAMLError } from 'yaml';
import type { Problem } from './schema-errors.js';
import type { ConfigDocument } from './schema.js';

export type ConfigFormat = 'yaml' | 'json';

/** Parses YAML (a superset of JSON) or strict JSON. Never throws for bad input. */
export function parseConfigText(text: string, format: ConfigFormat = 'yaml'): { ok: true; value: unknown } | { ok: false; problems: Problem[] } {
  if (format === 'json') {
    try {
      return { ok: true, value: JSON.parse(text) as unknown };
    } catch (err) {
      return { ok: false, problems: [{ path: '$', message: `not valid JSON: ${(err as Error).message}` }] };
    }
  }
  // Aliases are capped so a "billion laughs" document cannot blow up memory.
  const lines = new LineCounter();
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, strict: true, lineCounter: lines });
  const errors: YAMLError[] = [...doc.errors];
  if (errors.length > 0) {
    return {
      ok: false,
      problems: errors.map((e) => {
        const pos = lines.linePos(e.pos[0]);
        const where = `line ${pos.line}, column ${pos.col}`;
        const line = text.split('\n')[pos.line - 1] ?? '';
        // A bare "::" (or "::1") after a key reads as YAML syntax, the usual first stumble with IPv6.
        const hint = /:\s+:/.test(line) ? '; quote IPv6 addresses, e.g. address: "::"' : '';
        return { path: '$', message: `not valid YAML at ${where}: ${e.message.split('\n')[0]}${hint}` };
      }),
    };
  }
  try {
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    return { ok: true, value: value ?? {} };
  } catch (err) {
    return { ok: false, problems: [{ path: '$', message: `not usable YAML: ${(err as Error).message}` }] };
  }
}

/** YAML for a stored config. Applying it again yields the same document. */
export function configToYaml(config: ConfigDocument, header?: string): string {
  const body = stringify(config, { lineWidth: 0, aliasDuplicateObjects: false });
  return header ? `${header
    .split('\n')
    .map((l) => `# ${l}`)
    .join('\n')}\n${body}` : body;
}

/** Guesses the format from a content type or file name; YAML unless it says JSON. */
export function formatFromHint(hint: string | undefined): ConfigFormat {
  return hint && /json/i.test(hint) ? 'json' : 'yaml';
}

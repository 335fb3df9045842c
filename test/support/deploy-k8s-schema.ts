// Validates Kubernetes objects against the schemas of the Kubernetes API, as packaged by
// kubernetes-models (generated from the API server's OpenAPI spec), in two passes:
//  1. the package's JSON-schema validators: required fields, types, enums, formats (quantities,
//     CIDRs, int-or-string);
//  2. unknown fields. Those schemas allow extra properties, but the API server rejects unknown
//     fields (kubectl's default --validate=strict), so a typo such as `mountPropogation` would
//     pass pass 1 and fail at `kubectl apply`. The same package's TypeScript interfaces list
//     exactly the known fields, so we type-check each object as a literal of its interface: the
//     compiler's excess-property check then names every unknown field.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import ts from 'typescript';
import type { KubeObject } from './deploy-kubectl.js';
import { REPO_ROOT } from './deploy-kubectl.js';

const require = createRequire(import.meta.url);

/** `kubernetes-models/<group>/<version>/<Kind>`, the module of one object's model. */
function modelModule(obj: KubeObject): string {
  return `kubernetes-models/${obj.apiVersion}/${obj.kind}`;
}

function label(obj: KubeObject): string {
  return `${obj.kind}/${obj.metadata.name}`;
}

interface ModelClass {
  new (data: unknown): { validate(): void };
}

/** Pass 1: the JSON-schema validator of each object's model. Returns one message per problem. */
export async function schemaProblems(objs: KubeObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const obj of objs) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(modelModule(obj))) as Record<string, unknown>;
    } catch {
      problems.push(`${label(obj)}: no Kubernetes schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
      continue;
    }
    const Model = mod[obj.kind] as ModelClass | undefined;
    if (typeof Model !== 'function') {
      problems.push(`${label(obj)}: ${modelModule(obj)} exports no model ${obj.kind}`);
      continue;
    }
    try {
      new Model(structuredClone(obj)).validate();
    } catch (e) {
      problems.push(`${label(obj)}: ${(e as Error).message}`);
    }
  }
  return problems;
}

/** Pretty-prints JSON one value per line, remembering the JSON path each line belongs to. */
function printWithPaths(value: unknown, path: string, indent: string, head: string, tail: string, out: { lines: string[]; paths: string[] }): void {
  const emit = (text: string) => {
    out.lines.push(text);
    out.paths.push(path);
  };
  if (Array.isArray(value) && value.length > 0) {
    emit(`${indent}${head}[`);
    value.forEach((v, i) => printWithPaths(v, `${path}[${i}]`, indent + '  ', '', i < value.length - 1 ? ',' : '', out));
    emit(`${indent}]${tail}`);
  } else if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) {
    const entries = Object.entries(value as Record<string, unknown>);
    emit(`${indent}${head}{`);
    entries.forEach(([k, v], i) => {
      const key = /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
      printWithPaths(v, path + key, indent + '  ', `${JSON.stringify(k)}: `, i < entries.length - 1 ? ',' : '', out);
    });
    emit(`${indent}}${tail}`);
  } else {
    emit(`${indent}${head}${JSON.stringify(value)}${tail}`);
  }
}

/** Pass 2: unknown fields (and type mismatches) found by type-checking against the interfaces. */
export function unknownFieldProblems(objs: KubeObject[]): string[] {
  // The virtual file sits in the repository so that `kubernetes-models` resolves from node_modules.
  const file = join(REPO_ROOT, 'test', 'support', '__deploy_k8s_typecheck__.ts');
  const out = { lines: [] as string[], paths: [] as string[] };
  const owners: KubeObject[] = [];
  objs.forEach((obj, i) => {
    const from = out.lines.length;
    out.lines.push(`import type { I${obj.kind} as T${i} } from '${modelModule(obj)}';`);
    out.paths.push('$');
    printWithPaths(obj, '$', '', `export const o${i}: T${i} = `, ';', out);
    for (let l = from; l < out.lines.length; l++) owners[l] = obj;
  });
  const source = out.lines.join('\n') + '\n';

  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, onError, create) =>
    name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, onError, create);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === file ? source : readFile(name));

  // Fail loudly if the models are not installed, rather than reporting every object as broken.
  require.resolve('kubernetes-models/package.json');

  const program = ts.createProgram([file], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file);
  return diagnostics.map((d) => {
    const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
    const owner = owners[line];
    const chain = ts.flattenDiagnosticMessageText(d.messageText, '\n').split('\n');
    return `${owner ? label(owner) : '?'}: ${out.paths[line] ?? '$'}: ${chain[chain.length - 1]?.trim()}`;
  });
}

#!/usr/bin/node
// Validates request and response bodies against an OpenAPI 3.0 document with Debian's
// node-ajv (6.x) and node-js-yaml; used by test_grafana.py.
//
//   node validate_openapi.js validate SPEC.yaml < cases.json
//     cases: [{"name", "path", "method", "status", "request"?, "response"}]; prints
//     [{"name", "ok", "checked", "errors"}] and exits 1 when any case fails.
//     "checked" lists what had a schema ("request", "response"); a path, method or
//     status the document does not describe is an error.
//   node validate_openapi.js yaml2json FILE
//     prints FILE (YAML) as JSON, for the Python side to read provisioning files.
//
// Ajv 6 implements JSON Schema draft-07, which OpenAPI 3.0's schema objects mostly are.
// The differences handled here: `nullable: true` becomes a type that admits null, and
// `example` and other annotations are left for Ajv to ignore. $refs such as
// '#/components/schemas/dataframe' resolve inside the document, which is added whole.

'use strict';

const fs = require('fs');
const Ajv = require('ajv');
const yaml = require('js-yaml');

/** Rewrites OpenAPI-only keywords in schema (in place, recursively). */
function toJsonSchema(node) {
  if (Array.isArray(node)) {
    node.forEach(toJsonSchema);
    return node;
  }
  if (node === null || typeof node !== 'object') return node;
  if (node.nullable === true) {
    if (typeof node.type === 'string') node.type = [node.type, 'null'];
    else if (node.enum) node.enum = node.enum.concat([null]);
  }
  delete node.nullable;
  for (const key of Object.keys(node)) toJsonSchema(node[key]);
  return node;
}

/**
 * Fixes the one known erratum of simPod's openapi.yaml (snapshot 5624c447): the table
 * case of POST /query gives `rows.items` as a single cell (string or number) while its
 * own example, the README and Grafana's table converter all use rows that are arrays of
 * cells. Without this, no real table answer could validate. Throws when the document no
 * longer has that shape, so a corrected spec is noticed rather than silently patched.
 */
function fixTableRows(spec) {
  const schema = spec.paths['/query'].post.responses['200'].content['application/json'].schema;
  const table = schema.items.anyOf.find((s) => s.properties && s.properties.rows);
  const rows = table.properties.rows;
  const cell = rows.items;
  const isCell = cell && Array.isArray(cell.anyOf) && cell.anyOf.length === 2 &&
                 cell.anyOf.every((s) => s.type === 'string' || s.type === 'number');
  if (!isCell) {
    throw new Error('openapi.yaml: /query table rows are no longer a single cell; ' +
                    'revisit fixTableRows');
  }
  rows.items = {type: 'array', items: cell};
}

/** JSON pointer escaping of one path segment. */
function pointer(segment) {
  return String(segment).replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The JSON pointers of the request and response schemas of one case, if described. */
function schemaPointers(spec, c) {
  const op = spec.paths[c.path] && spec.paths[c.path][c.method.toLowerCase()];
  if (!op) return {error: `the document has no ${c.method} ${c.path}`};
  const base = `#/paths/${pointer(c.path)}/${c.method.toLowerCase()}`;
  const out = {};
  const content = op.requestBody && op.requestBody.content;
  const req = content && content['application/json'];
  if (req && req.schema) out.request = `${base}/requestBody/content/application~1json/schema`;
  const res = op.responses && op.responses[String(c.status)];
  if (!res) return {error: `the document has no status ${c.status} for ${c.method} ${c.path}`};
  const body = res.content && res.content['application/json'];
  if (body && body.schema) {
    out.response = `${base}/responses/${c.status}/content/application~1json/schema`;
  }
  return out;
}

function validate(specPath) {
  const spec = toJsonSchema(yaml.load(fs.readFileSync(specPath, 'utf8')));
  fixTableRows(spec);
  const ajv = new Ajv({allErrors: true, jsonPointers: true});
  ajv.addSchema(spec, 'openapi.json');
  const cases = JSON.parse(fs.readFileSync(0, 'utf8'));
  const results = [];
  for (const c of cases) {
    const result = {name: c.name, ok: true, checked: [], errors: []};
    const ptrs = schemaPointers(spec, c);
    if (ptrs.error) {
      result.ok = false;
      result.errors.push(ptrs.error);
    }
    for (const what of ['request', 'response']) {
      if (!ptrs[what] || !(what in c)) continue;
      const check = ajv.compile({$ref: `openapi.json${ptrs[what]}`});
      result.checked.push(what);
      if (!check(c[what])) {
        result.ok = false;
        for (const e of check.errors) result.errors.push(`${what}${e.dataPath} ${e.message}`);
      }
    }
    results.push(result);
  }
  process.stdout.write(JSON.stringify(results, null, 1) + '\n');
  return results.every((r) => r.ok) ? 0 : 1;
}

function main(argv) {
  if (argv[0] === 'validate' && argv.length === 2) return validate(argv[1]);
  if (argv[0] === 'yaml2json' && argv.length === 2) {
    process.stdout.write(JSON.stringify(yaml.load(fs.readFileSync(argv[1], 'utf8'))) + '\n');
    return 0;
  }
  process.stderr.write(
      'usage: validate_openapi.js validate SPEC.yaml < cases.json | yaml2json FILE\n');
  return 2;
}

process.exitCode = main(process.argv.slice(2));

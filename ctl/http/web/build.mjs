#!/usr/bin/env node
// Builds the web app aifactory-http serves.
//
//   node build.mjs --out OUTDIR --node-modules NODE_MODULES_DIR
//
// node_modules lives outside the source tree (the Rust build runs `npm ci` in a scratch dir), so
// esbuild is loaded from NODE_MODULES_DIR and package imports resolve there too. Writes:
//   OUTDIR/index.html            no inline script or style; references hashed assets only
//   OUTDIR/assets/NAME-HASH.EXT  minified bundles, plus .gz / .br siblings where smaller
//   OUTDIR/manifest.json         [{path, file, content_type, gzip, br, immutable}], what to embed
// The same inputs give byte-identical output. Fails if the page is over BUDGET compressed.

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const BUDGET = 500 * 1024;
const here = path.dirname(fileURLToPath(import.meta.url));

function usage(message) {
  console.error(`build.mjs: ${message}\nusage: node build.mjs --out OUTDIR --node-modules NODE_MODULES_DIR`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--out' || flag === '--node-modules') {
      if (value === undefined) usage(`${flag} needs a value`);
      args[flag.slice(2)] = path.resolve(value);
      i++;
    } else {
      usage(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  if (!args.out) usage('--out is required');
  if (!args['node-modules']) usage('--node-modules is required');
  return args;
}

const args = parseArgs(process.argv.slice(2));
const nodeModules = args['node-modules'];
const outDir = args.out;

let esbuild;
try {
  esbuild = createRequire(import.meta.url)(path.join(nodeModules, 'esbuild'));
} catch (e) {
  console.error(`build.mjs: cannot load esbuild from ${nodeModules} (run \`npm ci\` there first): ${e.message}`);
  process.exit(1);
}

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
  '.png': 'image/png',
};
const TEXT = new Set(['.html', '.js', '.css', '.svg', '.json']);

function contentType(file) {
  const type = CONTENT_TYPES[path.extname(file)];
  if (!type) throw new Error(`no content type known for ${file}`);
  return type;
}

// Clean only what this script writes, so a stale asset is never embedded.
fs.mkdirSync(outDir, { recursive: true });
for (const name of ['assets', 'index.html', 'index.html.gz', 'index.html.br', 'manifest.json']) {
  fs.rmSync(path.join(outDir, name), { recursive: true, force: true });
}
fs.mkdirSync(path.join(outDir, 'assets'));

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
  // Named here from their contents (below): esbuild's [hash] also covers the input paths,
  // and node_modules is wherever the caller put it.
  outdir: path.join(outDir, 'assets'),
  entryNames: '[name]',
  nodePaths: [nodeModules],
  legalComments: 'none',
  sourcemap: false,
  charset: 'utf8',
  logLevel: 'warning',
  write: false,
  define: { 'process.env.NODE_ENV': '"production"' },
});

// Writes bytes as assets/NAME-HASH.EXT, the hash from the bytes alone; returns its URL.
function writeHashed(name, bytes) {
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 12);
  const ext = path.extname(name);
  const file = `${path.basename(name, ext)}-${hash}${ext}`;
  fs.writeFileSync(path.join(outDir, 'assets', file), bytes);
  return `/assets/${file}`;
}

// One JS bundle and its CSS (no splitting, so no asset refers to another by name).
let entryJs = null;
let entryCss = null;
for (const out of result.outputFiles) {
  const name = path.basename(out.path);
  if (name === 'app.js') entryJs = writeHashed(name, out.contents);
  else if (name === 'app.css') entryCss = writeHashed(name, out.contents);
  else throw new Error(`esbuild wrote an unexpected file ${out.path}: only app.js and app.css are embedded`);
}
if (!entryJs) throw new Error('esbuild wrote no app.js');
const icon = writeHashed('icon.svg', fs.readFileSync(path.join(here, 'src/icon.svg')));
const escape = (s) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<title>aifactory</title>
<link rel="icon" href="${escape(icon)}" type="image/svg+xml">
${entryCss ? `<link rel="stylesheet" href="${escape(entryCss)}">\n` : ''}<script type="module" src="${escape(entryJs)}"></script>
</head>
<body>
<noscript><p>This page needs JavaScript. <code>aifactoryctl</code> offers everything it shows.</p></noscript>
<div id="app"></div>
</body>
</html>
`;
fs.writeFileSync(path.join(outDir, 'index.html'), html);

// Precompress every text file where it pays, and write the manifest.
function compress(rel) {
  const full = path.join(outDir, rel);
  const raw = fs.readFileSync(full);
  const ext = path.extname(rel);
  const sizes = { raw: raw.length, gzip: raw.length, br: raw.length };
  const out = { gzip: null, br: null };
  if (TEXT.has(ext)) {
    const gz = zlib.gzipSync(raw, { level: 9 });
    if (gz.length < raw.length) {
      fs.writeFileSync(full + '.gz', gz);
      out.gzip = rel + '.gz';
      sizes.gzip = gz.length;
    }
    const br = zlib.brotliCompressSync(raw, {
      params: {
        [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
        [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
      },
    });
    if (br.length < raw.length) {
      fs.writeFileSync(full + '.br', br);
      out.br = rel + '.br';
      sizes.br = br.length;
    }
  }
  return { ...out, sizes };
}

const assetFiles = fs.readdirSync(path.join(outDir, 'assets')).sort();
const manifest = [];
const totals = { raw: 0, gzip: 0, br: 0 };
const rows = [];
for (const rel of ['index.html', ...assetFiles.map((f) => `assets/${f}`)]) {
  const { gzip, br, sizes } = compress(rel);
  for (const k of Object.keys(totals)) totals[k] += sizes[k];
  rows.push([rel, sizes]);
  manifest.push({
    path: rel === 'index.html' ? '/' : '/' + rel,
    file: rel,
    content_type: contentType(rel),
    gzip,
    br,
    immutable: rel !== 'index.html',
  });
}
fs.writeFileSync(path.join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
for (const [rel, s] of rows) {
  console.log(`  ${rel.padEnd(40)} ${kb(s.raw).padStart(10)} raw ${kb(s.gzip).padStart(10)} gzip ${kb(s.br).padStart(10)} br`);
}
console.log(`web page: ${kb(totals.raw)} raw, ${kb(totals.gzip)} gzip, ${kb(totals.br)} brotli (budget ${kb(BUDGET)} compressed) -> ${outDir}`);
if (totals.gzip > BUDGET) {
  console.error(`build.mjs: the page is ${kb(totals.gzip)} gzip-compressed, over the ${kb(BUDGET)} budget`);
  process.exit(1);
}

// Bundles src/ into dist/ with esbuild. ESM with code splitting, so that the
// AWS SDK sits in a chunk that only an s3:// store loads. The native addons
// stay external (they ship platform binaries).
import { build } from 'esbuild';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

// Build beside dist/ and swap it in, so a walship running meanwhile (a
// test, PostgreSQL's archive_command) never finds dist/ half-written.
const out = join(root, `.dist-build-${process.pid}`);
rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: { main: join(root, 'src/cli/main.ts') },
  outdir: out,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  external: ['lz4-napi', '@napi-rs/blake-hash', '@node-rs/crc32'],
  define: { WALSHIP_BUILD_VERSION: JSON.stringify(pkg.version) },
  // Bundled CommonJS dependencies call require() for Node built-ins.
  banner: { js: "import { createRequire as __walshipCreateRequire } from 'node:module'; const require = __walshipCreateRequire(import.meta.url);" },
  legalComments: 'none',
  logLevel: 'warning',
  minifySyntax: true,
  sourcemap: false,
});
const old = join(root, `.dist-old-${process.pid}`);
if (existsSync(join(root, 'dist'))) renameSync(join(root, 'dist'), old);
renameSync(out, join(root, 'dist'));
rmSync(old, { recursive: true, force: true });

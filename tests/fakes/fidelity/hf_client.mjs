// Drives the official Hugging Face client (@huggingface/hub) against a hub at
// cfg.hubUrl (the fake, in tests) and prints what it saw as JSON on stdout.
// Why: proves tests/fakes/fake_hf.py speaks the Hub's wire protocol as the real
// client understands it (listing pages, revision -> sha, resolve + LFS redirect).
//
// usage: node hf_client.mjs '<json cfg>'
//   cfg: {hubUrl, repo, revision?, accessToken?, download: [paths], missingPath?,
//         missingRepo?, snapshotDir?, snapshotRepo? (default: repo)}
// Each step's result or error ({error: {name, statusCode, message}}) is reported.
import { createHash } from "node:crypto";
import { readdir, readFile, lstat } from "node:fs/promises";
import { join } from "node:path";
import { listFiles, fileDownloadInfo, downloadFile, modelInfo, snapshotDownload } from "@huggingface/hub";

// snapshotDownload logs with console.debug, which goes to stdout: keep stdout JSON only.
console.debug = console.log = (...a) => process.stderr.write(a.join(" ") + "\n");

const cfg = JSON.parse(process.argv[2]);
const common = { hubUrl: cfg.hubUrl, ...(cfg.accessToken ? { accessToken: cfg.accessToken } : {}) };
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

async function step(fn) {
  try {
    return await fn();
  } catch (e) {
    return { error: { name: e.name, statusCode: e.statusCode, message: String(e.message) } };
  }
}

async function walk(dir, base = "") {
  const out = {};
  for (const ent of await readdir(dir)) {
    const p = join(dir, ent);
    const rel = base ? `${base}/${ent}` : ent;
    const st = await lstat(p);
    if (st.isDirectory()) Object.assign(out, await walk(p, rel));
    else out[rel] = sha256(await readFile(p)); // readFile follows the blob symlinks
  }
  return out;
}

const out = {};
out.modelInfo = await step(async () => {
  const info = await modelInfo({ name: cfg.repo, revision: cfg.revision, additionalFields: ["sha", "siblings"], ...common });
  return { name: info.name, sha: info.sha, siblings: (info.siblings || []).map((s) => s.rfilename) };
});
out.files = await step(async () => {
  const files = [];
  for await (const e of listFiles({ repo: cfg.repo, recursive: true, revision: cfg.revision, ...common })) files.push(e);
  return files;
});
out.downloads = {};
for (const path of cfg.download || []) {
  out.downloads[path] = await step(async () => {
    const info = await fileDownloadInfo({ repo: cfg.repo, path, revision: cfg.revision, ...common });
    const blob = await downloadFile({ repo: cfg.repo, path, revision: cfg.revision, xet: false, ...common });
    const buf = Buffer.from(await blob.arrayBuffer());
    return { info, size: buf.length, sha256: sha256(buf) };
  });
}
if (cfg.missingPath) {
  out.missing = await step(async () => ({
    info: await fileDownloadInfo({ repo: cfg.repo, path: cfg.missingPath, revision: cfg.revision, ...common }),
  }));
}
if (cfg.missingRepo) {
  out.missingRepo = await step(() => modelInfo({ name: cfg.missingRepo, ...common }));
}
if (cfg.snapshotDir) {
  out.snapshot = await step(async () => {
    const dir = await snapshotDownload({ repo: cfg.snapshotRepo || cfg.repo, revision: cfg.revision, cacheDir: cfg.snapshotDir, ...common });
    return { dir, files: await walk(dir) };
  });
}
// exit explicitly: keep-alive sockets of the SDK's agents would hold the event loop open
process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));

// Drives the official Volcengine TOS SDK (@volcengine/tos-sdk) against a TOS
// endpoint (the fake, in tests) and prints what it saw as JSON on stdout.
// Why: proves tests/fakes/fake_tos.py accepts the SDK's TOS4-HMAC-SHA256
// signatures and answers listing / ranged GET / HEAD as the SDK expects.
//
// usage: node tos_client.mjs '<json cfg>'
//   cfg: {endpoint: "127.0.0.1:PORT", region, ak, sk, bucket, prefix?,
//         pageKeys?, range?: {key, start, end}, download?: {key, path, partSize},
//         missingKey?, ifMatchKey?, virtualHost?: {endpoint}}
// An IP endpoint makes the SDK use path-style URLs (http://IP:PORT/bucket/key).
// virtualHost sends requests through the SDK's proxyHost/proxyPort option, so the
// fake receives Host: <bucket>.<endpoint> (virtual-hosted style) on loopback.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { TosClient } from "@volcengine/tos-sdk";
import tosCrc64 from "tos-crc64-js";

const cfg = JSON.parse(process.argv[2]);
const [host, port] = cfg.endpoint.split(":");
const makeClient = (extra = {}) =>
  new TosClient({
    accessKeyId: cfg.ak,
    accessKeySecret: cfg.sk,
    region: cfg.region,
    endpoint: cfg.endpoint,
    secure: false,
    maxRetryCount: 0,
    ...extra,
  });
const client = makeClient();
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

async function step(fn) {
  try {
    return await fn();
  } catch (e) {
    return { error: { name: e.name, statusCode: e.statusCode, code: e.code, ec: e.data?.EC, message: String(e.message) } };
  }
}
const pickList = (d) => ({
  KeyCount: d.KeyCount, IsTruncated: d.IsTruncated, NextContinuationToken: d.NextContinuationToken,
  Contents: (d.Contents || []).map(({ Key, Size, ETag, HashCrc64ecma, LastModified, StorageClass }) =>
    ({ Key, Size, ETag, HashCrc64ecma, LastModified, StorageClass })),
});

const out = {};
// 1. listObjectsType2 as users call it: the SDK follows continuation tokens itself.
out.list = await step(async () => pickList((await client.listObjectsType2({ bucket: cfg.bucket, prefix: cfg.prefix || "" })).data));
// 2. one page at a time with a small MaxKeys, following NextContinuationToken by hand.
if (cfg.pageKeys) {
  out.pages = await step(async () => {
    const pages = [];
    let token;
    for (let i = 0; i < 1000; i++) {
      const r = await client.listObjectsType2({ bucket: cfg.bucket, prefix: cfg.prefix || "", maxKeys: cfg.pageKeys,
        listOnlyOnce: true, ...(token ? { continuationToken: token } : {}) });
      pages.push(pickList(r.data));
      if (!r.data.IsTruncated) break;
      token = r.data.NextContinuationToken;
    }
    return pages;
  });
}
// 3. a ranged getObjectV2, plus headObject.
if (cfg.range) {
  out.range = await step(async () => {
    const r = await client.getObjectV2({ bucket: cfg.bucket, key: cfg.range.key, dataType: "buffer",
      rangeStart: cfg.range.start, rangeEnd: cfg.range.end });
    return { statusCode: r.statusCode, contentRange: r.headers["content-range"], etag: r.data.etag,
      hashCrc64ecma: r.data.hashCrc64ecma, size: r.data.content.length, sha256: sha256(r.data.content) };
  });
  out.head = await step(async () => {
    const r = await client.headObject({ bucket: cfg.bucket, key: cfg.range.key });
    return { statusCode: r.statusCode, contentLength: r.data["content-length"], etag: r.data.etag,
      crc64: r.data["x-tos-hash-crc64ecma"] };
  });
}
// 4. the SDK's checkpointed multi-part downloadFile with CRC-64 verification on.
if (cfg.download) {
  out.download = await step(async () => {
    const c = makeClient({ enableCRC: true });
    await c.downloadFile({ bucket: cfg.bucket, key: cfg.download.key, filePath: cfg.download.path,
      partSize: cfg.download.partSize || 1024 * 1024, taskNum: 3 });
    const buf = await readFile(cfg.download.path);
    return { size: buf.length, sha256: sha256(buf), crc64: tosCrc64.crc64(buf) };
  });
}
if (cfg.missingKey) {
  out.missing = await step(() => client.getObjectV2({ bucket: cfg.bucket, key: cfg.missingKey, dataType: "buffer" }));
}
if (cfg.ifMatchKey) {
  out.ifMatch = await step(() => client.getObjectV2({ bucket: cfg.bucket, key: cfg.ifMatchKey, dataType: "buffer",
    ifMatch: '"00000000000000000000000000000000"' }));
}
if (cfg.virtualHost) {
  out.virtualHost = await step(async () => {
    const vc = makeClient({ endpoint: cfg.virtualHost.endpoint, proxyHost: host, proxyPort: Number(port) });
    const l = await vc.listObjectsType2({ bucket: cfg.bucket, prefix: cfg.prefix || "" });
    const res = { list: pickList(l.data) };
    if (cfg.range) {
      const r = await vc.getObjectV2({ bucket: cfg.bucket, key: cfg.range.key, dataType: "buffer",
        rangeStart: cfg.range.start, rangeEnd: cfg.range.end });
      res.range = { statusCode: r.statusCode, size: r.data.content.length, sha256: sha256(r.data.content) };
    }
    return res;
  });
}
// exit explicitly: keep-alive sockets of the SDK's agents would hold the event loop open
process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));

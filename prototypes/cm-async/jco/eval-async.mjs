// The `eval` import as the brief asks: an async JS function resolving to 1.
export default async function evalImport(keys, args) {
  globalThis.seen = [keys, args];
  await Promise.resolve();
  return 1n;
}

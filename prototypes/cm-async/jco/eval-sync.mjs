// The `eval` import for world a, sync mode: a plain JS function (jco maps result<s64, string>
// to "return the s64 as a BigInt, throw for err").
export default function evalImport(keys, args) {
  globalThis.seen = [keys, args];
  return 1n;
}

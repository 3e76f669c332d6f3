// Just enough of Node's API for the tests, so that the package's only
// dependency stays `typescript` (no @types/node).
declare module "node:test" {
  export function test(name: string, fn: () => void | Promise<void>): Promise<void>;
}
declare module "node:assert/strict" {
  const assert: {
    (value: unknown, message?: string): asserts value;
    ok(value: unknown, message?: string): asserts value;
    equal(actual: unknown, expected: unknown, message?: string): void;
    deepEqual(actual: unknown, expected: unknown, message?: string): void;
    throws(fn: () => unknown, expected?: unknown, message?: string): void;
    fail(message?: string): never;
  };
  export default assert;
}
declare module "node:fs" {
  export function readFileSync(path: URL, encoding: "utf8"): string;
  export function writeFileSync(path: URL, data: string): void;
  export function existsSync(path: URL): boolean;
}

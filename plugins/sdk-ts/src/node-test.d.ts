// The part of Node's test runner (`node:test`, Node 20+) that plugin tests use, declared
// here so that the SDK's type check needs no @types/node: tests run with `tessera-test`.

declare module "node:test" {
  type Body = () => void | Promise<void>;
  export function test(name: string, body: Body): Promise<void>;
  export function describe(name: string, body: () => void): Promise<void>;
  export function it(name: string, body: Body): Promise<void>;
}

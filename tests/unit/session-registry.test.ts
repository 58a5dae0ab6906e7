import { describe, expect, test } from "bun:test";
import { type Replaceable, SessionRegistry } from "../../src/session/session-registry";

class FakeSession implements Replaceable {
  replaced = 0;
  constructor(readonly name: string) {}
  replace(): void {
    this.replaced++;
  }
}

describe("SessionRegistry", () => {
  test("claim makes the session the live one", () => {
    const reg = new SessionRegistry<FakeSession>();
    const a = new FakeSession("a");
    reg.claim("aa:bb", a);
    expect(reg.get("aa:bb")).toBe(a);
    expect(reg.size).toBe(1);
    expect(a.replaced).toBe(0);
  });

  test("a newer claim replaces the old session and calls replace() on it once", () => {
    const reg = new SessionRegistry<FakeSession>();
    const old = new FakeSession("old");
    const fresh = new FakeSession("new");
    reg.claim("aa:bb", old);
    reg.claim("aa:bb", fresh);
    expect(reg.get("aa:bb")).toBe(fresh);
    expect(old.replaced).toBe(1);
    expect(fresh.replaced).toBe(0);
    expect(reg.size).toBe(1);
  });

  test("the old session is already unregistered when replace() runs", () => {
    const reg = new SessionRegistry<Replaceable>();
    const fresh = new FakeSession("new");
    let seenDuringReplace: Replaceable | undefined;
    const old: Replaceable = {
      replace() {
        seenDuringReplace = reg.get("aa:bb");
        // A replaced session releases itself while closing: that must not drop the new one.
        reg.release("aa:bb", old);
      },
    };
    reg.claim("aa:bb", old);
    reg.claim("aa:bb", fresh);
    expect(seenDuringReplace).toBe(fresh);
    expect(reg.get("aa:bb")).toBe(fresh);
  });

  test("claiming the same session again does not replace it", () => {
    const reg = new SessionRegistry<FakeSession>();
    const a = new FakeSession("a");
    reg.claim("aa:bb", a);
    reg.claim("aa:bb", a);
    expect(a.replaced).toBe(0);
    expect(reg.get("aa:bb")).toBe(a);
  });

  test("devices are independent", () => {
    const reg = new SessionRegistry<FakeSession>();
    const a = new FakeSession("a");
    const b = new FakeSession("b");
    reg.claim("dev-a", a);
    reg.claim("dev-b", b);
    expect(a.replaced).toBe(0);
    expect(b.replaced).toBe(0);
    expect(reg.size).toBe(2);
    expect([reg.get("dev-a")?.name, reg.get("dev-b")?.name]).toEqual(["a", "b"]);
  });

  test("release forgets the current session", () => {
    const reg = new SessionRegistry<FakeSession>();
    const a = new FakeSession("a");
    reg.claim("aa:bb", a);
    reg.release("aa:bb", a);
    expect(reg.get("aa:bb")).toBeUndefined();
    expect(reg.size).toBe(0);
  });

  test("release of a stale (replaced) session keeps the current one", () => {
    const reg = new SessionRegistry<FakeSession>();
    const old = new FakeSession("old");
    const fresh = new FakeSession("new");
    reg.claim("aa:bb", old);
    reg.claim("aa:bb", fresh);
    reg.release("aa:bb", old);
    expect(reg.get("aa:bb")).toBe(fresh);
    expect(reg.size).toBe(1);
  });

  test("release of an unknown device or session is a no-op", () => {
    const reg = new SessionRegistry<FakeSession>();
    const a = new FakeSession("a");
    reg.claim("aa:bb", a);
    reg.release("cc:dd", a);
    reg.release("aa:bb", new FakeSession("stranger"));
    expect(reg.get("aa:bb")).toBe(a);
    expect(reg.size).toBe(1);
  });
});

test("every connected session is tracked, with or without a Device-Id, until removed", () => {
  const reg = new SessionRegistry<FakeSession>();
  const a = new FakeSession("a");
  const anonymous = new FakeSession("anonymous");
  reg.add(a);
  reg.add(anonymous);
  reg.claim("dev-a", a);
  expect([...reg.all()].map((s) => s.name).sort()).toEqual(["a", "anonymous"]);
  reg.remove(anonymous);
  expect([...reg.all()].map((s) => s.name)).toEqual(["a"]);
  expect(reg.size).toBe(1);
});

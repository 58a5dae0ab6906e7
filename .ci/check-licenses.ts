// Fails when a package the shipped binary bundles (the dependencies of package.json and
// theirs, not devDependencies) is under a GPL-family license, or states no license at all:
// the binary is distributed under MIT and must stay distributable as such.
import { readFileSync } from "node:fs";
import path from "node:path";

// The project to check: the repository, or a directory given (the test gives a fixture).
const root = path.resolve(process.argv[2] ?? path.join(import.meta.dir, ".."));
const FORBIDDEN = /\b(A|L)?GPL\b|\bSSPL\b/i;

interface Manifest {
  readonly name?: string;
  readonly version?: string;
  readonly license?: string | { readonly type?: string };
  readonly licenses?: readonly { readonly type?: string }[];
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
}

function readManifest(dir: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as Manifest;
  } catch {
    return undefined;
  }
}

/** Node's resolution: the package's own node_modules, then each parent's. */
function resolve(name: string, from: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", name);
    if (readManifest(candidate) !== undefined) return candidate;
    if (dir === root || dir === path.dirname(dir)) return undefined;
  }
}

function licenseOf(m: Manifest): string {
  if (typeof m.license === "string") return m.license;
  if (m.license?.type) return m.license.type;
  return (m.licenses ?? [])
    .map((l) => l.type ?? "")
    .filter(Boolean)
    .join(" OR ");
}

const top = readManifest(root);
if (top === undefined) throw new Error("no package.json at the repository root");
const seen = new Map<string, string>();
const problems: string[] = [];
const queue: [name: string, from: string][] = Object.keys(top.dependencies ?? {}).map((n) => [n, root]);
while (queue.length > 0) {
  const [name, from] = queue.shift()!;
  const dir = resolve(name, from);
  if (dir === undefined) {
    // Optional dependencies of another platform are legitimately absent.
    continue;
  }
  if (seen.has(dir)) continue;
  const m = readManifest(dir)!;
  const license = licenseOf(m);
  seen.set(dir, license);
  if (license === "") problems.push(`${name}@${m.version}: states no license`);
  // "GPL OR MIT" lets us take MIT: only a license with no permissive alternative is refused.
  else if (license.split(/\s+OR\s+/i).every((alt) => FORBIDDEN.test(alt))) problems.push(`${name}@${m.version}: ${license}`);
  for (const dep of Object.keys({ ...m.dependencies, ...m.optionalDependencies })) queue.push([dep, dir]);
}
if (problems.length > 0) {
  console.error(`license check: ${problems.length} shipped package(s) not MIT-compatible:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
const counts = new Map<string, number>();
for (const l of seen.values()) counts.set(l, (counts.get(l) ?? 0) + 1);
console.log(`license check: ${seen.size} shipped packages, ${[...counts].map(([l, n]) => `${l} x${n}`).join(", ")}`);

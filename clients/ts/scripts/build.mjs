// Builds the npm package: copies the generated code (gen/ts: godel/v1 and the google/api and
// google/rpc protos it uses) into src/gen, compiles src to ESM JavaScript with .d.ts in dist/,
// and copies the repository's LICENSE beside package.json (npm pack ships it).
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const gen = join(pkg, "..", "..", "gen", "ts");
rmSync(join(pkg, "dist"), { recursive: true, force: true });
rmSync(join(pkg, "src", "gen"), { recursive: true, force: true });
for (const dir of ["godel", "google"]) {
  cpSync(join(gen, dir), join(pkg, "src", "gen", dir), { recursive: true });
}
const license = join(pkg, "..", "..", "LICENSE");
if (existsSync(license)) cpSync(license, join(pkg, "LICENSE"));
try {
  execFileSync(join(pkg, "node_modules", ".bin", "tsc"), ["-p", join(pkg, "tsconfig.build.json")], { stdio: "inherit" });
} catch {
  process.exit(1); // tsc printed why
}

// What the browser tests share: `spheroseg serve` on a free loopback port with a temp data
// directory, Debian's headless Chromium (driven by playwright-core), and pages that wait until
// the live connection is up. Run by .ci/run as `node --test tests/browser/` with SPHEROSEG_BIN
// pointing at the built binary.

import { before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdtempSync, mkdirSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
// Screenshots for a person to look at: target/screenshots/ (the repository's ignored target dir).
export const shots = join(here, "..", "..", "target", "screenshots");
mkdirSync(shots, { recursive: true });
export const fixtures = join(here, "..", "fixtures");
export const bin = process.env.SPHEROSEG_BIN;
const chromiumPath = process.env.CHROMIUM || execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
let browser;

/// Starts Chromium before the file's tests and closes it after them.
export function useBrowser() {
  before(async () => {
    assert.ok(bin && existsSync(bin), "set SPHEROSEG_BIN to the spheroseg binary");
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"],
    });
  });
  after(async () => { await browser?.close(); });
}

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** Starts `spheroseg serve`; resolves once it logs where it listens. */
export function serve({ dataDir, port = 0, config } = {}) {
  const dir = dataDir || mkdtempSync(join(tmpdir(), "spheroseg-ui-"));
  const args = ["serve", "--data-dir", join(dir, "data"), "--bind", `127.0.0.1:${port}`, "--workers", "2"];
  if (config) {
    const file = join(dir, "spheroseg.toml");
    writeFileSync(file, config);
    args.push("--config", file);
  }
  const child = spawn(bin, args, { env: { ...process.env, SPHEROSEG_LOG: "info" }, stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    const timer = setTimeout(() => reject(new Error("spheroseg did not start")), 30000);
    lines.on("line", (line) => {
      const m = line.match(/listening address=(\S+)/);
      if (m) { clearTimeout(timer); resolve({ child, dir, url: `http://${m[1]}` }); }
    });
    child.on("exit", (code) => reject(new Error(`spheroseg exited with ${code}`)));
  });
}

export async function stop(server) {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((r) => server.child.on("exit", r));
  server.child.kill("SIGTERM");
  await exited;
}

export async function openPage(url, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector("#connection.live");
  return { page, errors, context };
}

// The status page in real headless Chromium (Debian's `chromium`, driven by playwright-core), against
// `spheroseg serve` on a free loopback port with a temp data directory. Run by .ci/run as
// `node --test tests/browser/` with SPHEROSEG_BIN pointing at the built binary.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bin, fixtures, freePort, openPage, serve, shots, stop, useBrowser } from "./harness.mjs";

useBrowser();

const rowState = (page, name) =>
  page.locator(`#job-rows tr`, { hasText: name }).first().locator("td.state");

test("the overview loads with no console errors and shows the counts", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url);
    await page.waitForSelector("#counts .card");
    assert.match(await page.textContent("#counts"), /queued/);
    assert.match(await page.textContent("#facts"), /workers busy/);
    assert.ok(await page.isVisible("#no-jobs"), "an empty state invites the first upload");
    await page.waitForFunction(() => document.getElementById("retention").textContent.length > 0);
    assert.match(await page.textContent("#retention"), /Completed jobs and their results are kept until you delete them/);
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("three uploads go from queued to completed live, and the viewer draws the outlines", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url);
    // Paused first, so the three are seen queued before they run.
    await page.evaluate(() => fetch("/api/queue/pause", { method: "POST" }));
    await page.setInputFiles("#files", ["spheroid_lumen_8bit.png", "spheroid_plain_16bit.tif", "spheroid_core_8bit.png"]
      .map((f) => join(fixtures, f)));
    await page.waitForFunction(() => [...document.querySelectorAll("#job-rows td.state")].filter((td) => td.textContent === "queued").length === 3);
    await page.evaluate(() => fetch("/api/queue/resume", { method: "POST" }));
    for (const name of ["spheroid_lumen_8bit.png", "spheroid_plain_16bit.tif", "spheroid_core_8bit.png"]) {
      await page.waitForFunction((n) => [...document.querySelectorAll("#job-rows tr")]
        .some((r) => r.textContent.includes(n) && r.querySelector("td.state").textContent === "completed"), name, { timeout: 60000 });
    }
    // The upload list followed its jobs to the end.
    await page.waitForFunction(() => [...document.querySelectorAll("#uploads li")].filter((li) => /done: 1 object/.test(li.textContent)).length === 3);
    await page.screenshot({ path: join(shots, "overview.png"), fullPage: true });
    // Keyboard: a completed row opens with Enter.
    await page.locator("#job-rows tr", { hasText: "spheroid_lumen_8bit.png" }).focus();
    await page.keyboard.press("Enter");
    await page.waitForSelector("#metrics tbody tr td");
    await page.waitForFunction(() => document.getElementById("canvas").width === 384);
    // At the object's centroid the canvas shows the image (not the empty background), and the
    // outline colour appears somewhere on the canvas.
    const seen = await page.evaluate(async () => {
      const rows = await (await fetch(location.pathname.replace(/\/$/, "") + "/api/jobs?state=completed")).json();
      const job = rows.jobs.find((j) => j.image.name === "spheroid_lumen_8bit.png");
      const result = await (await fetch(`/api/jobs/${job.id}/result`)).json();
      const c = document.getElementById("canvas"), g = c.getContext("2d");
      const f = c.width / result.image.width;
      const { x, y } = result.metrics[0].centroid;
      const [r, gr, b] = g.getImageData(Math.round(x * f), Math.round(y * f), 1, 1).data;
      const all = g.getImageData(0, 0, c.width, c.height).data;
      let outline = 0;
      for (let i = 0; i < all.length; i += 4) if (all[i] < 120 && all[i + 1] > 170 && all[i + 2] > 220) outline++;
      return { centre: [r, gr, b], outline, holes: result.polygons.filter((p) => p.type === "internal").length };
    });
    assert.notDeepEqual(seen.centre, [17, 17, 17], "the centroid pixel is drawn");
    assert.ok(seen.outline > 100, `outline pixels: ${seen.outline}`);
    assert.equal(seen.holes, 1);
    assert.match(await page.textContent("#metrics"), /px²/);
    await page.screenshot({ path: join(shots, "viewer.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("an upload with a changed parameter, then Run again with… makes a second job linked to the first", async () => {
  const server = await serve();
  try {
    // Less motion: no smooth scrolling under the clicks.
    const { page, errors, context } = await openPage(server.url, { reducedMotion: "reduce" });
    const api = (path, init) => page.evaluate(async ([p, i]) => (await fetch(p, i)).json(), [path, init]);
    const { fields } = await api("/api/segmenters/builtin/params");
    const defaults = Object.fromEntries(fields.map((f) => [f.name, f.default]));
    // The form is built from the server's description: each field with its default shown.
    await page.click("#upload-params summary");
    await page.waitForSelector("#upload-min_circularity");
    assert.equal(await page.locator("#upload-param-fields .param").count(), fields.length);
    assert.match(await page.textContent("#upload-params .param[data-name=min_area_fraction]"), /Default: 0\.002 of the image\./);
    assert.equal(await page.inputValue("#upload-min_circularity"), "0");
    await page.fill("#upload-min_circularity", "0.2");
    assert.match(await page.textContent("#upload-params-changed"), /1 changed/);
    await page.setInputFiles("#files", [join(fixtures, "spheroid_lumen_8bit.png")]);
    const first = page.locator("#job-rows tr", { hasText: "spheroid_lumen_8bit.png" }).first();
    await first.locator("td.state", { hasText: "completed" }).waitFor({ timeout: 60000 });
    const [job] = (await api("/api/jobs")).jobs;
    assert.deepEqual(job.params, { ...defaults, min_circularity: 0.2 }, "only the changed field differs");

    // The viewer's "Run again with…" starts from the job's parameters.
    await first.click();
    await page.waitForSelector("#metrics tbody tr td");
    await page.getByRole("button", { name: "Run again with…" }).click();
    assert.equal(await page.inputValue("#rerun-min_circularity"), "0.2");
    assert.equal(await page.inputValue("#rerun-declump"), "auto");
    await page.fill("#rerun-min_circularity", "0.4");
    await page.selectOption("#rerun-declump", "off");
    assert.match(await page.textContent("#rerun-changed"), /2 changed/);
    await page.getByRole("button", { name: "Run again", exact: true }).click();
    await page.waitForSelector("#rerun-form", { state: "hidden" });
    // The second job appears in the table linked to the first, and the viewer links to it.
    await page.locator("#job-rows tr", { hasText: "rerun of" }).locator("td.state", { hasText: "completed" })
      .waitFor({ timeout: 60000 });
    await page.locator("#job-rows tr", { hasText: "rerun as" }).waitFor();
    const jobs = (await api("/api/jobs")).jobs;
    assert.equal(jobs.length, 2);
    const rerun = jobs.find((j) => j.id !== job.id);
    assert.equal(rerun.rerun_of, job.id);
    assert.equal(rerun.image.hash, job.image.hash);
    assert.deepEqual(rerun.params, { ...defaults, min_circularity: 0.4, declump: "off" });
    assert.match(await page.textContent("#viewer-links"), new RegExp(`rerun as ${rerun.id}`));
    await page.screenshot({ path: join(shots, "rerun.png"), fullPage: true });
    // The rerun's viewer links back.
    await page.locator("#job-rows tr", { hasText: "rerun of" }).click();
    await page.waitForFunction((id) => document.getElementById("viewer-links").textContent.includes(`rerun of ${id}`), job.id);
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("a running job shows its progress", async () => {
  const server = await serve();
  try {
    // A 1024² image takes a debug build a few hundred ms: long enough to see progress.
    const dir = mkdtempSync(join(tmpdir(), "spheroseg-big-"));
    execFileSync(bin, ["demo-images", dir, "--size", "1024", "--count", "1"]);
    const { page, context } = await openPage(server.url);
    await page.setInputFiles("#files", [join(dir, "spheroid_plain_0_16bit.tif")]);
    await page.waitForFunction(() => {
      const row = document.querySelector("#job-rows tr");
      if (!row) return false;
      const p = row.querySelector("progress").value;
      return row.querySelector("td.state").textContent === "active" && p > 0 && p < 100;
    }, null, { timeout: 30000, polling: 5 });
    await page.waitForFunction(() => document.querySelector("#job-rows td.state").textContent === "completed", null, { timeout: 60000 });
    await context.close();
  } finally { await stop(server); }
});

test("a refused upload shows the server's reason", async () => {
  const server = await serve();
  try {
    const { page, context } = await openPage(server.url);
    await page.setInputFiles("#files", [join(fixtures, "not_an_image.txt")]);
    await page.waitForSelector("#uploads li.bad");
    assert.match(await page.textContent("#uploads li.bad"), /not an image/);
    await context.close();
  } finally { await stop(server); }
});

test("cancel and retry from the jobs table", async () => {
  const server = await serve();
  try {
    const { page, context } = await openPage(server.url);
    await page.evaluate(() => fetch("/api/queue/pause", { method: "POST" }));
    await page.setInputFiles("#files", [join(fixtures, "spheroid_core_8bit.png")]);
    const state = rowState(page, "spheroid_core_8bit.png");
    await state.waitFor();
    assert.equal(await state.textContent(), "queued");
    await page.locator("#job-rows tr", { hasText: "spheroid_core_8bit.png" }).getByRole("button", { name: "Cancel" }).click();
    await page.waitForFunction(() => document.querySelector("#job-rows td.state").textContent === "cancelled");
    await page.locator("#job-rows tr", { hasText: "spheroid_core_8bit.png" }).getByRole("button", { name: "Retry" }).click();
    await page.waitForFunction(() => document.querySelector("#job-rows td.state").textContent === "queued");
    await page.evaluate(() => fetch("/api/queue/resume", { method: "POST" }));
    await page.waitForFunction(() => document.querySelector("#job-rows td.state").textContent === "completed", null, { timeout: 60000 });
    await context.close();
  } finally { await stop(server); }
});

test("bulk cancel asks first, then cancels every matching job", async () => {
  const server = await serve();
  try {
    const { page, context } = await openPage(server.url);
    await page.evaluate(() => fetch("/api/queue/pause", { method: "POST" }));
    await page.setInputFiles("#files", ["spheroid_core_8bit.png", "spheroid_lumen_8bit.png"].map((f) => join(fixtures, f)));
    await page.waitForFunction(() => document.querySelectorAll("#job-rows tr").length === 2);
    // The question comes after a dry run on the server: wait for it, however slow the machine
    // (dismissed in the handler, as a click does not return while a dialog is open).
    const question = new Promise((resolve) => page.once("dialog", (d) => { resolve(d.message()); d.dismiss(); }));
    await page.click("#bulk-cancel");
    const asked = await question;
    await page.waitForTimeout(300);
    assert.equal(await page.locator("#job-rows td.state", { hasText: "cancelled" }).count(), 0, "dismissed: nothing happens");
    assert.match(asked, /^Cancel 2 jobs/, "it says how many it will touch");
    page.once("dialog", (d) => d.accept());
    await page.click("#bulk-cancel");
    await page.waitForFunction(() => [...document.querySelectorAll("#job-rows td.state")].every((td) => td.textContent === "cancelled"));
    assert.match(await page.textContent("#bulk-result"), /2 of 2 cancelled/);
    await context.close();
  } finally { await stop(server); }
});

test("the breaker banner appears while the ML service fails and leaves when it recovers", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spheroseg-ui-"));
  const flag = join(dir, "down");
  writeFileSync(flag, "");
  const script = `if [ -e '${flag}' ]; then exit 2; fi; echo '{"success":true,"polygons":[{"id":"p","points":[[10,10],[60,10],[60,60],[10,60]],"type":"external","class":"spheroid"}]}' > "$1"`;
  const config = `[ml]\nmin_calls = 2\nreset_timeout_ms = 1500\n[queue]\nbackoff_base_ms = 200\n[command]\nargv = ["sh", "-c", ${JSON.stringify(script)}, "sh", "{output_json}"]\n`;
  const server = await serve({ dataDir: dir, config });
  try {
    const { page, context } = await openPage(server.url);
    await page.selectOption("#segmenter", "command");
    await page.setInputFiles("#files", ["spheroid_lumen_8bit.png", "spheroid_core_8bit.png", "spheroid_plain_16bit.tif"]
      .map((f) => join(fixtures, f)));
    await page.waitForSelector("#banners div.bad", { timeout: 30000 });
    assert.match(await page.textContent("#banners"), /command is unavailable/);
    rmSync(flag);
    await page.waitForFunction(() => !document.querySelector("#banners div.bad"), null, { timeout: 40000 });
    await page.waitForFunction(() => [...document.querySelectorAll("#job-rows td.state")].every((td) => td.textContent === "completed")
      && document.querySelectorAll("#job-rows tr").length === 3, null, { timeout: 60000 });
    await context.close();
  } finally { await stop(server); }
});

test("the page reconnects after the server restarts", async () => {
  const port = await freePort();
  let server = await serve({ port });
  const dataDir = server.dir;
  try {
    const { page, context } = await openPage(server.url);
    await stop(server);
    await page.waitForSelector("#connection.down", { timeout: 20000 });
    server = await serve({ dataDir, port });
    await page.waitForSelector("#connection.live", { timeout: 30000 });
    // Live again: an upload made elsewhere appears without a reload.
    execFileSync("curl", ["-s", "-F", `image=@${join(fixtures, "spheroid_core_8bit.png")}`, `${server.url}/api/jobs`]);
    await rowState(page, "spheroid_core_8bit.png").waitFor({ timeout: 30000 });
    await context.close();
  } finally { await stop(server); }
});

test("a watched folder shows its counts, and a file dropped in it is counted done live", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spheroseg-ui-"));
  const folder = join(dir, "export");
  mkdirSync(folder);
  copyFileSync(join(fixtures, "spheroid_core_8bit.png"), join(folder, "A01.png"));
  const config = `[[watch]]\npath = ${JSON.stringify(folder)}\nsettle_ms = 200\n`;
  const server = await serve({ dataDir: dir, config });
  try {
    const { page, errors, context } = await openPage(server.url);
    await page.waitForSelector("#watch:not([hidden]) .folder");
    assert.match(await page.textContent("#watch"), /export/);
    await page.waitForFunction(() => /1\s*done/.test(document.getElementById("watch").textContent), null, { timeout: 30000 });
    copyFileSync(join(fixtures, "spheroid_lumen_8bit.png"), join(folder, "A02.png"));
    await page.waitForFunction(() => /2\s*done/.test(document.getElementById("watch").textContent), null, { timeout: 30000 });
    assert.match(await page.textContent("#watch"), /last scan/);
    await page.screenshot({ path: join(shots, "watch.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("a project remembers its pixel size; its images are measured and drawn in µm", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url, { acceptDownloads: true });
    await page.fill("#project-name", "screen-1");
    await page.click("#project-form button[type=submit]");
    await page.waitForSelector("#project-settings:not([hidden])");
    assert.match(await page.textContent("#project-saved"), /No pixel size remembered/);
    await page.fill("#project-px", "0.65");
    await page.fill("#project-objective", "10× objective");
    await page.click("#project-settings button[type=submit]");
    await page.waitForFunction(() => document.getElementById("project-saved").textContent.startsWith("Remembered: 0.65 µm/px (10× objective)"));
    // The upload form says which pixel size the next images of the project get.
    await page.fill("#project", "screen-1");
    await page.dispatchEvent("#project", "input");
    assert.match(await page.textContent("#upload-pixel"), /0\.65 µm\/px \(10× objective\), remembered for project screen-1/);
    await page.setInputFiles("#files", [join(fixtures, "spheroid_lumen_8bit.png")]);
    await page.waitForFunction(() => [...document.querySelectorAll("#job-rows tr")]
      .some((r) => r.textContent.includes("spheroid_lumen_8bit.png") && r.querySelector("td.state").textContent === "completed"), null, { timeout: 60000 });
    await page.locator("#job-rows tr", { hasText: "spheroid_lumen_8bit.png" }).click();
    await page.waitForSelector("#metrics tbody tr td");
    assert.equal(await page.textContent("#metrics-pixel"), "Pixel size 0.65 µm, remembered for the project.");
    assert.match(await page.textContent("#metrics thead"), /Area \(µm²\)/);
    assert.match(await page.textContent("#metrics tbody"), / µm/);
    const [csv] = await Promise.all([page.waitForEvent("download"), page.click("#dl-csv")]);
    assert.equal(csv.suggestedFilename(), "spheroid_lumen_8bit.csv", "named after the image");
    // The project's distribution is in µm² now that every object is calibrated.
    await page.click("#project-form button[type=submit]");
    await page.waitForFunction(() => document.getElementById("hist-area-caption").textContent === "Area (µm²)");
    assert.equal(await page.textContent("#project-summary"), "1 object in 1 image");
    const [xlsx] = await Promise.all([page.waitForEvent("download"), page.click("#project-xlsx")]);
    assert.equal(xlsx.suggestedFilename(), "screen-1.xlsx");
    await page.screenshot({ path: join(shots, "project.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("a file dropped on the drop zone makes one job, and one dropped on the page makes one too", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url);
    const png = readFileSync(join(fixtures, "spheroid_core_8bit.png")).toString("base64");
    const drop = (selector, name) => page.evaluate(({ selector, name, png }) => {
      const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], name, { type: "image/png" }));
      document.querySelector(selector).dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, { selector, name, png });
    await drop("#drop", "zone.png");
    await drop("main", "page.png");
    await page.waitForFunction(() => ["zone.png", "page.png"].every((n) => [...document.querySelectorAll("#job-rows tr")]
      .some((r) => r.textContent.includes(n) && r.querySelector("td.state").textContent === "completed")), null, { timeout: 60000 });
    const jobs = await page.evaluate(async () => (await (await fetch("/api/jobs?limit=100")).json()).jobs.map((j) => j.image.name).sort());
    assert.deepEqual(jobs, ["page.png", "zone.png"], "one job per dropped file");
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

// Correcting outlines by hand in the viewer, in headless Chromium against `spheroseg serve`
// (`harness.mjs`): delete an object, undo and redo, draw an outline, save, and the CSV then has the
// metrics the server measured on the saved outline and says it was corrected.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fixtures, openPage, serve, shots, stop, useBrowser } from "./harness.mjs";

useBrowser();

/// The CSV's rows as objects keyed by header (no quoted commas in these files' numbers).
function csvRows(text) {
  const rows = text.trim().split(/\r?\n/).map((l) => l.split(","));
  return rows.slice(1).map((r) => Object.fromEntries(rows[0].map((h, i) => [h, r[i]])));
}

function shoelace(points) {
  let s = 0, p = 0;
  for (let i = 0; i < points.length; i++) {
    const a = points[i], b = points[(i + 1) % points.length];
    s += a.x * b.y - b.x * a.y;
    p += Math.hypot(b.x - a.x, b.y - a.y);
  }
  return { area: Math.abs(s) / 2, perimeter: p };
}

/// Uploads the lumen fixture, opens its result and the editor: the job, its result, a click at
/// image pixels, and a wait for the editor's status to match.
async function openEditor(page, { touch = false } = {}) {
  await page.setInputFiles("#files", [join(fixtures, "spheroid_lumen_8bit.png")]);
  const row = page.locator("#job-rows tr", { hasText: "spheroid_lumen_8bit.png" }).first();
  await row.locator("td.state", { hasText: "completed" }).waitFor({ timeout: 60000 });
  await row.click();
  await page.waitForSelector("#metrics tbody tr td");
  await page.waitForFunction(() => document.getElementById("canvas").width > 0 && /Version 1/.test(document.getElementById("viewer-version").textContent));
  const job = await page.evaluate(async () => (await (await fetch("/api/jobs")).json()).jobs[0]);
  const before = await page.evaluate(async (id) => (await fetch(`/api/jobs/${id}/result`)).json(), job.id);
  // Image pixels to page coordinates, as the viewer draws them (fit: scale 1, no offset).
  const screen = (x, y) => page.evaluate(([x, y, w]) => {
    const c = document.getElementById("canvas"), r = c.getBoundingClientRect(), f = c.width / w;
    return { x: r.left + (x * f * r.width) / c.width, y: r.top + (y * f * r.height) / c.height };
  }, [x, y, before.image.width]);
  const click = async (x, y) => {
    const p = await screen(x, y);
    await (touch ? page.touchscreen.tap(p.x, p.y) : page.mouse.click(p.x, p.y));
  };
  const status = (re) => page.waitForFunction((src) => new RegExp(src).test(document.getElementById("edit-status").textContent), re.source);
  await page.getByRole("button", { name: "Edit outlines" }).click();
  await page.waitForSelector("#edit-tools:not([hidden])");
  assert.equal(await page.getAttribute("#edit-select", "aria-pressed"), "true");
  // Select the first object just inside its outline (its centroid may lie in its hole).
  const outer = before.polygons[0].points, c0 = before.metrics[0].centroid;
  const q = outer[0];
  await click(q.x + (c0.x - q.x) * 0.1, q.y + (c0.y - q.y) * 0.1);
  await status(/1 selected/);
  return { job, before, click, status };
}

const saved = (page, v) => page.waitForFunction((v) => new RegExp(`Version ${v}, corrected by hand`).test(document.getElementById("viewer-version").textContent), v);

test("deleting an object and drawing an outline, saved, changes the CSV and marks it corrected", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url, { reducedMotion: "reduce" });
    const { job, before, click } = await openEditor(page);
    const n = before.polygons.filter((p) => p.type === "external").length;
    assert.ok(n >= 1);
    assert.equal(before.corrected, false);
    await page.keyboard.press("Delete");
    await page.waitForFunction((k) => document.getElementById("edit-status").textContent.startsWith(`${k} object`), n - 1);
    // Undo brings it back, redo deletes it again.
    await page.keyboard.press("Control+z");
    await page.waitForFunction((k) => document.getElementById("edit-status").textContent.startsWith(`${k} object`), n);
    await page.keyboard.press("Control+Shift+z");
    await page.waitForFunction((k) => document.getElementById("edit-status").textContent.startsWith(`${k} object`), n - 1);

    // Draw a missing outline: four corners, then the first again to close it.
    await page.keyboard.press("d");
    assert.equal(await page.getAttribute("#edit-draw", "aria-pressed"), "true");
    const w = before.image.width, h = before.image.height;
    const corners = [[0.08, 0.08], [0.3, 0.08], [0.3, 0.28], [0.08, 0.28]].map(([a, b]) => [a * w, b * h]);
    for (const [x, y] of corners) await click(x, y);
    await click(corners[0][0], corners[0][1]);
    await page.waitForFunction((k) => /Outline added/.test(document.getElementById("edit-status").textContent), null);
    assert.match(await page.textContent("#edit-status"), new RegExp(`^${n} object`));

    // The help popover lists the shortcuts.
    await page.getByRole("button", { name: "Keyboard shortcuts" }).click();
    assert.match(await page.textContent("#edit-help"), /Ctrl\s*\+\s*Z/);
    await page.locator("#edit-help").screenshot({ path: join(shots, "edit-help.png") });
    await page.keyboard.press("Escape");
    await page.waitForSelector("#edit-help", { state: "hidden" });
    assert.match(await page.textContent("#edit-status"), /1 selected/, "Escape closed the help, not the selection");

    await page.locator("#viewer").screenshot({ path: join(shots, "edit-1280.png") });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator("#viewer").screenshot({ path: join(shots, "edit-390.png") });
    const fits = await page.evaluate(() => { const v = document.getElementById("viewer"); return [v.scrollWidth, v.clientWidth]; });
    assert.ok(fits[0] <= fits[1], `the editing viewer fits a 390 px screen: ${fits}`);
    await page.setViewportSize({ width: 1280, height: 800 });

    // Another page showing the same result follows the save (the result_corrected event).
    const other = await openPage(server.url);
    await other.page.locator("#job-rows tr", { hasText: "spheroid_lumen_8bit.png" }).first().click();
    await other.page.waitForFunction(() => /Version 1, as segmented/.test(document.getElementById("viewer-version").textContent));

    await page.getByRole("button", { name: "Save", exact: true }).click();
    await saved(page, 2);
    assert.ok(await page.isHidden("#edit-tools"), "saving leaves edit mode");
    await saved(other.page, 2);
    assert.deepEqual(other.errors, []);
    await other.context.close();
    await page.waitForFunction(() => document.querySelectorAll("#versions-list li").length === 2);
    await page.click("#versions summary");
    assert.match(await page.textContent("#versions-list li:last-child"), /Version 2 \(latest\): corrected by hand/);
    assert.equal(await page.locator("#versions-list li:first-child button", { hasText: "Restore" }).count(), 1);

    const after = await page.evaluate(async (id) => (await fetch(`/api/jobs/${id}/result`)).json(), job.id);
    assert.equal(after.version, 2);
    assert.equal(after.corrected, true);
    const drawn = after.polygons.filter((p) => p.type === "external").at(-1);
    const expect = shoelace(drawn.points);
    const csv = csvRows(await page.evaluate(async (id) => (await fetch(`/api/jobs/${id}/result.csv`)).text(), job.id));
    assert.equal(csv.length, n, "one object deleted, one drawn");
    assert.ok(csv.every((r) => r.Corrected === "TRUE"), "every row says the result was corrected");
    const last = csv.at(-1);
    assert.ok(Math.abs(Number(last["Area (px²)"]) - expect.area) < 1e-6 * expect.area, `${last["Area (px²)"]} vs ${expect.area}`);
    assert.ok(Math.abs(Number(last["Perimeter (px)"]) - expect.perimeter) < 1e-6 * expect.perimeter);
    const square = 0.22 * w * 0.2 * h;
    assert.ok(Math.abs(expect.area - square) < 0.05 * square, `drawn ${expect.area}, meant ${square}`);
    // The job's row knows too.
    const listed = await page.evaluate(async () => (await (await fetch("/api/jobs")).json()).jobs[0]);
    assert.deepEqual([listed.version, listed.corrected], [2, true]);
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("an object split along a line and merged again keeps its area, and the server takes it", async (t) => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url, { reducedMotion: "reduce" });
    const { job, before, click, status } = await openEditor(page);
    const n = before.polygons.filter((p) => p.type === "external").length;
    const m0 = before.metrics[0], bb = m0.bounding_box;
    // A cut across the top fifth, clear of the lumen.
    await page.keyboard.press("s");
    const y = bb.y + 0.2 * bb.height;
    await click(bb.x - 8, y);
    await click(bb.x + bb.width + 8, y);
    await page.keyboard.press("Enter");
    await status(/Split in two/);
    assert.match(await page.textContent("#edit-status"), new RegExp(`^${n + 1} objects, 2 selected`));
    await page.keyboard.press("m");
    await status(/Merged/);
    assert.match(await page.textContent("#edit-status"), new RegExp(`^${n} object`));
    await page.keyboard.press("Control+s");
    await saved(page, 2);
    const after = await page.evaluate(async (id) => (await fetch(`/api/jobs/${id}/result`)).json(), job.id);
    const merged = after.metrics.at(-1);
    t.diagnostic(`area after split and merge ${merged.area} px², segmented ${m0.area} px²`);
    assert.ok(Math.abs(merged.area - m0.area) < 0.02 * m0.area, `merged ${merged.area}, was ${m0.area}`);
    assert.equal(merged.holes, m0.holes, "the lumen stays a hole");
    // A cut through the lumen is refused with a reason, and changes nothing.
    await page.getByRole("button", { name: "Edit outlines" }).click();
    await click(bb.x + 3, bb.y + bb.height / 2);
    await page.keyboard.press("s");
    await click(bb.x - 8, bb.y + bb.height / 2);
    await click(bb.x + bb.width + 8, bb.y + bb.height / 2);
    await page.keyboard.press("Enter");
    await status(/goes through a hole/);
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("on a touch screen a tap selects, the buttons delete and draw, and the save goes through", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url, { reducedMotion: "reduce", hasTouch: true, isMobile: true, viewport: { width: 390, height: 844 } });
    const { before, click, status } = await openEditor(page, { touch: true });
    const n = before.polygons.filter((p) => p.type === "external").length;
    await page.locator("#edit-delete").tap();
    await status(new RegExp(`^${n - 1} object`));
    await page.locator("#edit-draw").tap();
    const w = before.image.width, h = before.image.height;
    const corners = [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3], [0.1, 0.3], [0.1, 0.1]];
    for (const [a, b] of corners) await click(a * w, b * h);
    await status(/Outline added/);
    await page.locator("#edit-save").tap();
    await saved(page, 2);
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

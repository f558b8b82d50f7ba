// The page for a day of lab work, in headless Chromium: the gallery (a thumbnail with outlines per
// job, grouped by plate, flags, the viewer and the arrow keys), the jobs table's search and sort,
// and every view at 390 px (a phone) and 1280 px: no sideways scroll, the state column in sight,
// upload in the first screen, unique ids and labelled controls. Screenshots go to
// target/screenshots/ for a person to look at.

import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fixtures, openPage, serve, shots, stop, useBrowser } from "./harness.mjs";

useBrowser();

/// Three fixtures under plate/well names, and a fourth whose parameters leave no object.
function plateFiles() {
  const dir = mkdtempSync(join(tmpdir(), "spheroseg-plate-"));
  const files = [["spheroid_lumen_8bit.png", "P1_B01.png"], ["spheroid_core_8bit.png", "P1_A01.png"],
    ["spheroid_plain_16bit.tif", "P1_A02.tif"]];
  return files.map(([from, to]) => { copyFileSync(join(fixtures, from), join(dir, to)); return join(dir, to); });
}

/// Uploads the plate, plus `empty.png` with parameters that keep no object; waits until all four
/// are completed in the table.
async function uploadPlate(page) {
  await page.setInputFiles("#files", plateFiles());
  await page.evaluate(async (png) => {
    const form = new FormData();
    const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
    form.append("image", new File([bytes], "empty.png", { type: "image/png" }));
    form.append("params", JSON.stringify({ min_area_fraction: 0.9 }));
    await fetch("/api/jobs", { method: "POST", body: form });
  }, (await import("node:fs")).readFileSync(join(fixtures, "spheroid_core_8bit.png")).toString("base64"));
  await page.waitForFunction(() => {
    const states = [...document.querySelectorAll("#job-rows td.state")].map((td) => td.textContent);
    return states.length === 4 && states.every((s) => s === "completed");
  }, null, { timeout: 60000 });
}

/// Whether the page is exactly as wide as the window (nothing to scroll sideways).
const fits = (page) => page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);

test("the gallery shows a thumbnail per job with its outlines, grouped by plate, and opens the viewer", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url, { reducedMotion: "reduce" });
    await uploadPlate(page);
    // Lazy: thumbnails load as the gallery scrolls into view.
    await page.locator("#gallery").scrollIntoViewIfNeeded();
    await page.waitForFunction(() => [...document.querySelectorAll("#gallery-grid img")]
      .filter((i) => i.src.startsWith("blob:") && i.complete && i.naturalWidth > 0).length === 4, null, { timeout: 30000 });
    const jobs = await page.evaluate(async () => (await (await fetch("/api/jobs")).json()).jobs);
    assert.equal(await page.locator("#gallery-grid li.tile").count(), jobs.length, "a tile per job");
    // The outlines are drawn in the thumbnail (yellow pixels).
    const yellow = await page.evaluate(() => {
      const img = [...document.querySelectorAll("#gallery-grid img")].find((i) => i.closest("li").textContent.includes("P1_A01"));
      const c = document.createElement("canvas");
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const g = c.getContext("2d"); g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] > 180 && d[i + 1] > 150 && d[i + 2] < 90) n++;
      return n;
    });
    assert.ok(yellow > 50, `outline pixels in the thumbnail: ${yellow}`);
    // Grouped by the plate in the names, ordered by well; the empty result is flagged in words.
    const groups = await page.locator("#gallery-grid .gallery-group h3").allTextContents();
    assert.ok(groups.some((g) => /plate P1/.test(g)), groups.join(" | "));
    const plate = page.locator("#gallery-grid .gallery-group", { hasText: "plate P1" });
    assert.deepEqual((await plate.locator(".name").allTextContents()).map((t) => t.split(" ")[0]), ["A01", "A02", "B01"]);
    const empty = page.locator("#gallery-grid li.tile", { hasText: "empty.png" });
    assert.match(await empty.textContent(), /0 objects.*no object/);
    await page.check("#gallery-flagged");
    assert.equal(await page.locator("#gallery-grid li.tile").count(), 1, "only the one worth a look");
    await page.uncheck("#gallery-flagged");
    await page.screenshot({ path: join(shots, "gallery-1280.png"), fullPage: true });

    // Arrow keys move between tiles; Enter opens one; in the viewer they step through the plate.
    await plate.locator("button.thumb").first().focus();
    await page.keyboard.press("ArrowRight");
    assert.match(await page.evaluate(() => document.activeElement.getAttribute("aria-label")), /P1_A02/);
    await page.keyboard.press("ArrowLeft");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.getElementById("viewer-title").textContent === "Result: P1_A01.png");
    await page.waitForSelector("#metrics tbody tr td");
    assert.match(await page.textContent("#gallery-position"), /Image \d+ of 4 in the gallery/);
    await page.keyboard.press("ArrowRight");
    await page.waitForFunction(() => document.getElementById("viewer-title").textContent === "Result: P1_A02.tif");
    await page.click("#gallery-prev");
    await page.waitForFunction(() => document.getElementById("viewer-title").textContent === "Result: P1_A01.png");
    await page.screenshot({ path: join(shots, "viewer-1280.png") });
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("the jobs table searches by file name, sorts by any column and says when filters find nothing", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url);
    await uploadPlate(page);
    const names = () => page.$$eval("#job-rows tr:not([hidden]) td:first-child", (tds) => tds.map((td) => td.textContent));
    await page.fill("#job-search", "a0");
    assert.deepEqual((await names()).sort(), ["P1_A01.png", "P1_A02.tif"]);
    await page.fill("#job-search", "nothing-like-this");
    assert.ok(await page.isVisible("#no-jobs"));
    assert.equal(await page.textContent("#no-jobs"), "No jobs match these filters.");
    await page.fill("#job-search", "");
    assert.ok(!(await page.isVisible("#no-jobs")));

    // A header sorts ascending, then descending; the Sort menu says the same.
    await page.click("#jobs thead button:text-is('Image')");
    assert.deepEqual(await names(), ["empty.png", "P1_A01.png", "P1_A02.tif", "P1_B01.png"]);
    assert.equal(await page.getAttribute("#jobs thead th[data-sort=image]", "aria-sort"), "ascending");
    await page.click("#jobs thead button:text-is('Image')");
    assert.deepEqual(await names(), ["P1_B01.png", "P1_A02.tif", "P1_A01.png", "empty.png"]);
    assert.equal(await page.inputValue("#job-sort"), "image:-1");
    await page.selectOption("#job-sort", "objects:1");
    assert.equal((await names())[0], "empty.png", "no object sorts first");
    const objects = await page.$$eval("#job-rows tr td:nth-child(6)", (tds) => tds.map((td) => td.textContent));
    assert.deepEqual(objects, ["0", "1", "1", "1"], "the object count is a column");

    // Created times keep counting without a reload.
    const created = page.locator("#job-rows tr td[data-label=Created]").first();
    const before = await created.textContent();
    await page.waitForFunction((t) => document.querySelector("#job-rows tr td[data-label=Created]").textContent !== t, before, { timeout: 30000 });

    await page.selectOption("#state-filter", "failed");
    await page.waitForFunction(() => !document.getElementById("no-jobs").hidden);
    assert.equal(await page.textContent("#no-jobs"), "No jobs match these filters.");
    await page.selectOption("#state-filter", "");
    await page.waitForFunction(() => document.querySelectorAll("#job-rows tr").length === 4);
    await page.screenshot({ path: join(shots, "jobs-1280.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

/// Every id on the page is unique, and every control has a name a screen reader can say.
async function accessible(page, view) {
  const { dupes, unnamed } = await page.evaluate(() => {
    const ids = [...document.querySelectorAll("[id]")].map((e) => e.id);
    const dupes = ids.filter((id, i) => ids.indexOf(id) !== i);
    const unnamed = [...document.querySelectorAll("input, select, textarea, button")].filter((e) => {
      if (e.type === "hidden") return false;
      const named = e.labels?.length || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby") || e.textContent.trim() || e.title;
      return !named;
    }).map((e) => e.outerHTML.slice(0, 80));
    return { dupes, unnamed };
  });
  assert.deepEqual(dupes, [], `${view}: duplicated ids`);
  assert.deepEqual(unnamed, [], `${view}: controls without a label`);
}

test("at 390 px no view scrolls sideways, the state column shows, upload is on the first screen; at 1280 the metrics table lets a person pick columns", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url, { viewport: { width: 390, height: 844 }, reducedMotion: "reduce" });
    const drop = await page.locator("#drop").boundingBox();
    assert.ok(drop && drop.y + drop.height <= 844, `the drop zone is in the first screen: ${JSON.stringify(drop)}`);
    assert.deepEqual(await fits(page), [390, 390], "empty page");
    await page.screenshot({ path: join(shots, "empty-390.png"), fullPage: true });
    await uploadPlate(page);
    const views = {
      jobs: async () => {},
      search: async () => { await page.fill("#job-search", "P1"); },
      parameters: async () => { await page.fill("#job-search", ""); await page.click("#upload-params summary"); },
      gallery: async () => {
        await page.locator("#gallery").scrollIntoViewIfNeeded();
        await page.waitForFunction(() => document.querySelectorAll("#gallery-grid img[src^='blob:']").length === 4, null, { timeout: 30000 });
      },
      viewer: async () => {
        await page.locator("#gallery-grid button.thumb").first().click();
        await page.waitForSelector("#metrics tbody tr td");
      },
      rerun: async () => { await page.click("#rerun-open"); await page.waitForSelector("#rerun-form:not([hidden])"); },
      project: async () => {
        await page.click("#rerun-cancel");
        await page.fill("#project-name", "none-yet");
        await page.click("#project-form button[type=submit]");
        await page.waitForSelector("#project-settings:not([hidden])");
      },
    };
    for (const [view, show] of Object.entries(views)) {
      await show();
      assert.deepEqual(await fits(page), [390, 390], `${view}: scrollWidth equals the viewport`);
      await accessible(page, view);
      await page.screenshot({ path: join(shots, `${view}-390.png`), fullPage: true });
    }
    // Every job's state is in sight on a phone: its card shows it within the screen's width.
    const states = await page.$$eval("#job-rows td.state", (tds) => tds.map((td) => {
      const r = td.getBoundingClientRect();
      return { text: td.textContent, shown: r.width > 0 && r.left >= 0 && r.right <= window.innerWidth };
    }));
    assert.equal(states.length, 4);
    assert.ok(states.every((s) => s.shown && s.text === "completed"), JSON.stringify(states));

    // At 1280 the metrics table says it scrolls, and a column can be hidden.
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.waitForFunction(() => !document.getElementById("metrics-scroll").hidden);
    await page.click("#metrics-columns summary");
    await page.uncheck("#metrics-column-list label:has-text('Perimeter') input");
    assert.ok(!(await page.isVisible("#metrics th:text-is('Perimeter')")), "the column is hidden");
    assert.ok(await page.isVisible("#metrics th:text-is('Feret max')"));
    assert.deepEqual(await fits(page), [1280, 1280]);
    await accessible(page, "viewer at 1280");
    await page.screenshot({ path: join(shots, "viewer-metrics-1280.png") });
    // Keyboard focus is visible: a focused button draws an outline.
    await page.focus("#zoom-reset");
    await page.keyboard.press("Tab");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, "none", "focus is visible");
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

// A job's whole story on the status page, in headless Chromium (`harness.mjs`): the queue paused
// and resumed from the overview, the drawer of a failed job with its attempts and events (opened
// from the jobs table, closed with Escape, Tab kept inside), and a completed job's drawer opened
// from the viewer with its stage timings. Screenshots at 1280 and 390 px go to target/screenshots.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fixtures, openPage, serve, shots, stop, useBrowser } from "./harness.mjs";

useBrowser();

const row = (page, name) => page.locator("#job-rows tr", { hasText: name }).first();
/// The value of the overview card labelled `label`.
const card = (page, label) => page.evaluate((l) => [...document.querySelectorAll(".card")]
  .find((c) => c.querySelector("span").textContent === l)?.querySelector("b").textContent, label);
const queueState = (page) => page.evaluate(async () => (await (await fetch("/api/queue")).json()).paused);

test("the queue is paused and resumed from the overview, and says so in words", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url);
    const toggle = page.locator("#queue-toggle");
    await page.waitForFunction(() => !document.getElementById("queue-toggle").disabled);
    assert.match(await page.textContent("#queue-state"), /Queue running/);
    assert.equal(await toggle.textContent(), "Pause the queue");

    await toggle.click();
    await page.waitForFunction(() => /paused/.test(document.getElementById("queue-state").textContent));
    assert.equal(await queueState(page), true);
    assert.equal(await toggle.textContent(), "Resume the queue");
    assert.match(await page.textContent("#queue-state"), /Queue paused: nothing new starts/);
    await page.waitForFunction(() => /The queue is paused/.test(document.getElementById("banners").textContent));
    // Nothing starts while paused.
    await page.setInputFiles("#files", [join(fixtures, "spheroid_core_8bit.png")]);
    await row(page, "spheroid_core_8bit.png").locator("td.state", { hasText: "queued" }).waitFor();
    await page.screenshot({ path: join(shots, "overview-paused-1280.png"), fullPage: true });

    await toggle.click();
    await page.waitForFunction(() => /Queue running/.test(document.getElementById("queue-state").textContent));
    assert.equal(await queueState(page), false);
    await row(page, "spheroid_core_8bit.png").locator("td.state", { hasText: "completed" }).waitFor({ timeout: 60000 });
    // The overview shows the data directory's size and the disk's free space.
    await page.waitForFunction(() => /data directory/.test(document.getElementById("facts").textContent));
    assert.match(await page.textContent("#facts"), /disk free of/);
    // The upload form offers only what this server runs: no ML service is configured here.
    assert.deepEqual(await page.locator("#segmenter option").allTextContents(), ["default (builtin)", "builtin"]);
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(shots, "overview-390.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("the drawer shows a failed job's attempts with their errors and its events", async () => {
  // A program that always fails with a transient error: two attempts, then failed.
  const script = "echo 'GPU busy, try later' >&2; exit 2";
  const config = `[queue]\nmax_attempts = 2\nbackoff_base_ms = 50\n[command]\nargv = ["sh", "-c", ${JSON.stringify(script)}, "sh", "{output_json}"]\n`;
  const server = await serve({ config });
  try {
    const { page, errors, context } = await openPage(server.url, { reducedMotion: "reduce" });
    await page.selectOption("#segmenter", "command");
    assert.match(await page.textContent("#segmenter"), /command \(local program\)/);
    await page.setInputFiles("#files", [join(fixtures, "spheroid_lumen_8bit.png")]);
    await row(page, "spheroid_lumen_8bit.png").locator("td.state", { hasText: "failed" }).waitFor({ timeout: 60000 });

    const details = row(page, "spheroid_lumen_8bit.png").getByRole("button", { name: "Details of spheroid_lumen_8bit.png" });
    await details.click();
    const drawer = page.getByRole("dialog", { name: /Job: spheroid_lumen_8bit.png/ });
    await drawer.waitFor();
    await drawer.locator("tr.attempt").nth(1).waitFor();
    const attempts = drawer.locator("tr.attempt");
    assert.equal(await attempts.count(), 2);
    for (let i = 0; i < 2; i++) {
      const text = await attempts.nth(i).textContent();
      assert.match(text, /command/);
      assert.match(text, /GPU busy, try later/);
    }
    assert.match(await attempts.nth(0).textContent(), /failed, retried later/);
    assert.match(await attempts.nth(1).textContent(), /failed/);
    const kinds = await drawer.locator(".drawer-events li").evaluateAll((items) => items.map((li) => li.dataset.kind));
    assert.deepEqual(kinds, ["queued", "started", "retrying", "requeued", "started", "failed"]);
    assert.match(await drawer.locator(".drawer-events li[data-kind=failed]").textContent(), /GPU busy, try later/);
    assert.match(await drawer.textContent(), /Stage timings come with the result/);
    assert.ok(await drawer.getByRole("button", { name: "Run again" }).isVisible());
    await page.screenshot({ path: join(shots, "drawer-failed-1280.png") });

    // Tab stays inside the drawer: from its last control to its first, and back.
    const close = drawer.getByRole("button", { name: "Close the job's details" });
    assert.ok(await close.evaluate((b) => b === document.activeElement), "focus starts on Close");
    await page.keyboard.press("Shift+Tab");
    assert.ok(await page.evaluate(() => document.getElementById("drawer").contains(document.activeElement)));
    await page.keyboard.press("Tab");
    assert.ok(await close.evaluate((b) => b === document.activeElement), "Tab from the last control comes back to the first");
    // Escape closes it and focus goes back to the button that opened it.
    await page.keyboard.press("Escape");
    await drawer.waitFor({ state: "hidden" });
    assert.ok(await page.evaluate(() => document.activeElement?.classList.contains("details")));

    await page.setViewportSize({ width: 390, height: 844 });
    await details.click();
    await drawer.locator("tr.attempt").nth(1).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 390);
    await page.screenshot({ path: join(shots, "drawer-failed-390.png") });
    await drawer.locator("tr.attempt").first().scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, "drawer-failed-390-attempts.png") });
    await page.keyboard.press("Escape");
    await drawer.waitFor({ state: "hidden" });

    // The overview counts the failure; a cancelled job is not one.
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.waitForFunction(() => /failed, last 5 min/.test(document.getElementById("facts").textContent));
    assert.equal(await card(page, "failed, last 5 min"), "1");
    await page.click("#queue-toggle");
    await page.waitForFunction(() => /Queue paused/.test(document.getElementById("queue-state").textContent));
    await page.selectOption("#segmenter", "builtin");
    await page.setInputFiles("#files", [join(fixtures, "spheroid_core_8bit.png")]);
    await row(page, "spheroid_core_8bit.png").getByRole("button", { name: "Cancel" }).click();
    await row(page, "spheroid_core_8bit.png").locator("td.state", { hasText: "cancelled" }).waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll("#counts .card")]
      .some((c) => c.textContent === "1cancelled"));
    assert.equal(await card(page, "failed, last 5 min"), "1");
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

test("a completed job's drawer opens from the viewer with its stage timings", async () => {
  const server = await serve();
  try {
    const { page, errors, context } = await openPage(server.url, { reducedMotion: "reduce" });
    await page.setInputFiles("#files", [join(fixtures, "spheroid_core_8bit.png")]);
    const done = row(page, "spheroid_core_8bit.png");
    await done.locator("td.state", { hasText: "completed" }).waitFor({ timeout: 60000 });
    await done.locator("td").first().click();
    await page.waitForSelector("#metrics tbody tr td");
    await page.click("#viewer-details");
    const drawer = page.getByRole("dialog", { name: /Job: spheroid_core_8bit.png/ });
    await drawer.locator("tr.attempt").first().waitFor();
    const timings = await drawer.getByRole("region", { name: "Timings" }).textContent();
    for (const stage of ["waited in the queue", "decode", "measure"]) assert.match(timings, new RegExp(stage));
    assert.match(await drawer.locator("tr.attempt").first().textContent(), /builtin.*completed/);
    assert.match(await drawer.textContent(), /Parameters/);
    await drawer.locator("img.drawer-image[src^='blob:']").waitFor();
    await page.screenshot({ path: join(shots, "drawer-completed-1280.png") });
    await page.keyboard.press("Escape");
    await drawer.waitFor({ state: "hidden" });
    assert.ok(await page.evaluate(() => document.activeElement?.id === "viewer-details"));
    assert.deepEqual(errors, []);
    await context.close();
  } finally { await stop(server); }
});

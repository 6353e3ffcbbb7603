// The operator console in a real browser: Debian's Chromium, driven by playwright-core
// (nothing downloads a browser). Run by crates/amiproxy/tests/web.rs:
//
//   node console_browser.js http://127.0.0.1:PORT [screenshot.png]
//
// Logs in, sees both upstreams up, originates a call through the JSON API and sees its
// events in the tail and the rate chart move, and sees a refused action listed as refused.
"use strict";
const { chromium } = require("playwright-core");

const base = process.argv[2];
const shot = process.argv[3];
const TIMEOUT = 15000;

function basic(user, secret) {
  return "Basic " + Buffer.from(`${user}:${secret}`).toString("base64");
}

async function action(name, user, secret, body) {
  const r = await fetch(`${base}/ami/action/${name}`, {
    method: "POST",
    headers: { Authorization: basic(user, secret), "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  return { status: r.status, body: await r.json() };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // A 401 from the state poll before login, or from a wrong secret, is expected: Chromium
  // logs those as "Failed to load resource"; anything else in the console is a defect.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  try {
    await page.goto(`${base}/console/`);
    // A wrong secret is refused on the page.
    await page.fill("#login-user", "operator");
    await page.fill("#login-secret", "wrong");
    await page.click("#login-submit");
    await page.waitForFunction(() => document.querySelector("#login-error").textContent.length > 0);
    // The right one opens the console.
    await page.fill("#login-secret", "operator-secret");
    await page.click("#login-submit");
    await page.waitForSelector("#app:not([hidden])");
    for (const server of ["pbx1", "pbx2"]) {
      await page.waitForSelector(`#upstreams tr[data-server="${server}"] td.state.up`);
    }
    await page.waitForSelector("#tail-status:has-text('live')");

    // A call through the JSON API: its events reach the tail, and the rate moves.
    await page.fill("#tail-filter", "Local/100@default");
    await page.waitForTimeout(400); // the filter is sent after typing pauses (250 ms)
    const call = await action("Originate", "admin", "admin-secret", {
      Channel: "Local/100@default", Application: "Wait", Data: "1", Async: "true", Server: "pbx1",
    });
    if (call.status !== 200 || call.body.response.Response !== "Success") {
      throw new Error("originate through the JSON API: " + JSON.stringify(call));
    }
    await page.waitForSelector('#tail .tail-row[data-event="Newchannel"][data-server="pbx1"]');
    await page.waitForFunction(() => Number(document.querySelector("#rate-now").dataset.rate || 0) > 0);

    // A refused action shows as refused.
    const refused = await action("Originate", "ro", "ro-secret", {
      Channel: "Local/100@default", Application: "Wait",
    });
    if (refused.body.response.Message !== "Permission denied") {
      throw new Error("the read-only user's originate was not refused: " + JSON.stringify(refused));
    }
    await page.waitForSelector('#refusals tr[data-action="Originate"]');
    const reason = await page.textContent('#refusals tr[data-action="Originate"] td:last-child');
    // Sessions are listed with their transport (this browser's console login is not one;
    // the JSON API calls above were, briefly).
    await page.waitForSelector("#sessions tbody tr[data-transport]");
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    if (errors.length) throw new Error("errors in the page: " + errors.join("; "));
    console.log("ok: console logged in, upstreams up, events and rate seen, refusal shown (" + reason + ")");
  } catch (e) {
    if (shot) await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.error(String(e && e.stack || e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();

#!/usr/bin/env node
// asterisk-manager (a real AMI client library from npm) through amiproxy in front of two
// Asterisks named pbx1 and pbx2.
//
// Usage: node proxy_asterisk_manager.js HOST PORT USER SECRET
//
// Logs in, pings, originates async with its own ActionID and waits for the OriginateResponse
// carrying it, reads a QueueStatus list merged from both servers, and sees events tagged with
// their Server from both. The library lower-cases every header name (`server`, `actionid`).
// Exits non-zero with a message on any failure; every wait has its own timeout.
'use strict';

const path = require('path');
const AsteriskManager = require(path.join(__dirname, 'node_modules', 'asterisk-manager'));

const STEP_TIMEOUT_MS = 10000;
const TOTAL_TIMEOUT_MS = 30000;

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}

if (process.argv.length < 6) {
  fail('usage: proxy_asterisk_manager.js HOST PORT USER SECRET');
}
const [host, port, user, secret] = process.argv.slice(2, 6);

setTimeout(() => fail(`did not finish within ${TOTAL_TIMEOUT_MS} ms`), TOTAL_TIMEOUT_MS).unref();

// Resolves with f's result, or fails the script after `ms` naming `what`.
function within(what, promise, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Resolves with the first managerevent for which `pred` holds.
function waitEvent(ami, what, pred) {
  return within(
    what,
    new Promise((resolve) => {
      const on = (ev) => {
        if (pred(ev)) {
          ami.removeListener('managerevent', on);
          resolve(ev);
        }
      };
      ami.on('managerevent', on);
    }),
  );
}

// One action; resolves with its response, rejects with an `Response: Error` answer.
function action(ami, fields) {
  return within(
    `the answer to ${fields.action}`,
    new Promise((resolve, reject) => {
      ami.action(fields, (err, res) => {
        if (err) reject(new Error(`${fields.action} answered with an error: ${JSON.stringify(err)}`));
        else resolve(res);
      });
    }),
  );
}

async function main() {
  // Port 0 keeps the constructor from connecting on its own: its automatic login has no
  // callback, and we want to see the login's answer.
  const ami = new AsteriskManager(0, host, user, secret, true);
  ami.options.port = Number(port);
  let done = false;
  ami.on('error', (e) => fail(`connection error: ${e && e.message ? e.message : e}`));
  ami.on('close', () => {
    if (!done) fail('the proxy closed the connection');
  });

  // Everything that arrives, kept for the checks below.
  const events = [];
  ami.on('managerevent', (ev) => events.push(ev));

  await within(
    'connect and login',
    new Promise((resolve, reject) => {
      ami.connect(ami.options.port, host, () => {
        ami.login((err) => (err ? reject(new Error(`login refused: ${JSON.stringify(err)}`)) : resolve()));
      });
    }),
  );

  // Ping: answered by the proxy as Asterisk does.
  const pong = await action(ami, { action: 'Ping', actionid: 'node-ping-1' });
  if (pong.response !== 'Success' || pong.ping !== 'Pong' || pong.actionid !== 'node-ping-1') {
    fail(`bad Ping answer: ${JSON.stringify(pong)}`);
  }

  // Async Originate with our own ActionID: the broadcast OriginateResponse carries it back.
  const originated = waitEvent(
    ami,
    'OriginateResponse with ActionID node-orig-1',
    (ev) => ev.event === 'OriginateResponse' && ev.actionid === 'node-orig-1',
  );
  const orig = await action(ami, {
    action: 'Originate',
    channel: 'Local/100@default',
    application: 'Wait',
    data: '1',
    async: 'true',
    actionid: 'node-orig-1',
  });
  if (orig.response !== 'Success' || orig.actionid !== 'node-orig-1' || !orig.server) {
    fail(`Originate refused or untagged: ${JSON.stringify(orig)}`);
  }
  const oresp = await originated;
  if (oresp.response !== 'Success' || !['pbx1', 'pbx2'].includes(oresp.server)) {
    fail(`bad OriginateResponse: ${JSON.stringify(oresp)}`);
  }

  // QueueStatus goes to both servers and comes back as one list.
  const items = [];
  const completes = [];
  const collect = (ev) => {
    if (ev.actionid !== 'node-qs-1') return;
    if (ev.event === 'QueueStatusComplete') completes.push(ev);
    else items.push(ev);
  };
  ami.on('managerevent', collect);
  const completed = waitEvent(
    ami,
    'QueueStatusComplete',
    (ev) => ev.event === 'QueueStatusComplete' && ev.actionid === 'node-qs-1',
  );
  const qs = await action(ami, { action: 'QueueStatus', actionid: 'node-qs-1' });
  if (qs.response !== 'Success' || String(qs.eventlist).toLowerCase() !== 'start') {
    fail(`bad QueueStatus answer: ${JSON.stringify(qs)}`);
  }
  const complete = await completed;
  // A Ping after the list: nothing more for the list may arrive before its answer.
  await action(ami, { action: 'Ping', actionid: 'node-ping-2' });
  ami.removeListener('managerevent', collect);
  if (completes.length !== 1) {
    fail(`expected one QueueStatusComplete, got ${completes.length}: ${JSON.stringify(completes)}`);
  }
  if (Number(complete.listitems) !== items.length) {
    fail(`ListItems ${complete.listitems} but ${items.length} items: ${JSON.stringify(items)}`);
  }
  const params = items.filter((ev) => ev.event === 'QueueParams');
  const qservers = [...new Set(params.map((ev) => ev.server))].sort();
  if (qservers.join(',') !== 'pbx1,pbx2') {
    fail(`QueueParams should come from pbx1 and pbx2, got ${JSON.stringify(qservers)}: ${JSON.stringify(items)}`);
  }
  const untagged = items.filter((ev) => !ev.server);
  if (untagged.length) fail(`list items without a server: ${JSON.stringify(untagged)}`);

  // Events from each server, tagged: a UserEvent routed to each by the Server header.
  for (const server of ['pbx1', 'pbx2']) {
    const aid = `node-ue-${server}`;
    const seen = waitEvent(
      ami,
      `UserEvent NodeProbe from ${server}`,
      (ev) => ev.event === 'UserEvent' && ev.userevent === 'NodeProbe' && ev.actionid === aid,
    );
    const res = await action(ami, { action: 'UserEvent', userevent: 'NodeProbe', server, actionid: aid });
    if (res.server !== server) fail(`UserEvent for ${server} answered by ${JSON.stringify(res)}`);
    const ev = await seen;
    if (ev.server !== server) fail(`UserEvent sent to ${server} came back tagged ${JSON.stringify(ev)}`);
  }
  const tagged = [...new Set(events.filter((ev) => ev.server).map((ev) => ev.server))].sort();
  if (!tagged.includes('pbx1') || !tagged.includes('pbx2')) {
    fail(`events should be tagged with both servers, got ${JSON.stringify(tagged)}`);
  }

  done = true;
  console.log(
    `ok: ping, originate (${oresp.server}), QueueStatus with ${items.length} items from ${qservers.join(' and ')}, ` +
      `${events.length} events tagged ${tagged.join(' and ')}`,
  );
  ami.disconnect();
  process.exit(0);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));

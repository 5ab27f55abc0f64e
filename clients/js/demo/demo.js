// The demo page: one PushgateClient, its state, its events, read and send.
import { PushgateClient } from '../src/index.js';

const $ = (id) => document.getElementById(id);
let client = null;
const seen = new Map(); // seq -> row

function log(text) {
  const line = document.createElement('div');
  line.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').prepend(line);
}

function setConnected(on) {
  $('connect-btn').disabled = on;
  for (const id of ['disconnect-btn', 'read-btn', 'send-btn']) $(id).disabled = !on;
}

function addEvent(e) {
  const row = document.createElement('tr');
  if (!e.transient) row.className = 'unread';
  const cells = [e.seq ?? '(transient)', e.id ?? '', new Date().toLocaleTimeString(),
    JSON.stringify(e.body, null, 1)];
  for (const [i, text] of cells.entries()) {
    const td = document.createElement('td');
    td.textContent = String(text);
    if (i === 3) td.className = 'body';
    row.append(td);
  }
  $('events').prepend(row);
  if (e.seq !== null) seen.set(e.seq, row);
  $('count').textContent = String(Number($('count').textContent) + 1);
}

$('connect').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = $('token').value.trim();
  if (!token) {
    log('paste a token first');
    return;
  }
  client = new PushgateClient({ url: $('url').value.trim(), token, after: Number($('after').value) });
  client.on('state', (s) => {
    $('state').textContent = s;
    $('state').className = s;
  });
  client.on('connected', (hello) => {
    $('info').textContent = `user ${hello.user}, session ${hello.session.slice(0, 8)}…, head ${hello.head}`;
    $('unread').textContent = String(hello.unread);
    log(`connected (head ${hello.head}, unread ${hello.unread})`);
  });
  client.on('disconnected', (c) => log(`disconnected: ${c.code} ${c.reason}`));
  client.on('event', addEvent);
  client.on('error', (e) => {
    log(`stopped: ${e.message}`);
    setConnected(false);
  });
  client.start();
  setConnected(true);
});

$('disconnect-btn').addEventListener('click', async () => {
  await client?.close();
  setConnected(false);
});

$('read-btn').addEventListener('click', async () => {
  const seqs = [...seen.keys()];
  if (!seqs.length) return;
  const r = await client.read({ ranges: [[Math.min(...seqs), Math.max(...seqs)]] });
  for (const row of seen.values()) row.className = '';
  $('unread').textContent = String(r.unread);
  log(`marked read; unread ${r.unread} of ${r.live}`);
});

$('send-btn').addEventListener('click', async () => {
  try {
    const users = $('to').value.split(',').map((u) => u.trim()).filter(Boolean);
    const r = await client.send(JSON.parse($('body').value), { users });
    log(`sent: ${JSON.stringify(r.results)}`);
  } catch (e) {
    log(`send failed: ${e.message}`);
  }
});

// ?url=...&token=...&after=... prefill the form (e.g. links printed by a backend)
const params = new URLSearchParams(location.search);
for (const key of ['url', 'token', 'after']) {
  if (params.has(key)) $(key).value = params.get(key);
}

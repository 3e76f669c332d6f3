// The dcengine demo page: join a call by name, chat (channel 10000, Durable),
// everyone's cursors (channel 10001, Lossy, High, about 30 Hz) and file drop
// (channel 10002, Durable, chunked and paced under the Durable rule), with the
// participant list. Plain ES module over the client bundle (`./dcengine.js`,
// built by `npm run bundle`); no frameworks.
//
// Query parameters prefill the form: ?call=NAME&name=ME&token=HEX, and
// &join=1 joins at once.

const CHAT = 10000;
const CURSORS = 10001;
const FILES = 10002;

const CURSOR_HZ = 30;
/** A cursor that did not move is sent again this often, so that its
 *  receivers (closed after 2 minutes without messages) stay open. */
const CURSOR_REFRESH_MS = 5000;
/** File messages: [kind u8][file id u32][index u32] + bytes. */
const FILE_HEADER = 9;
const FILE_START = 1;
const FILE_CHUNK = 2;
/** Largest chunk, whatever the server allows: keeps each send well inside
 *  a one-second bucket of the 64 kbps Durable rule, and progress smooth. */
const FILE_CHUNK_MAX = 4096;
/** File bytes a second, headers included: under the 64 kbps (8,000 B/s)
 *  Durable rule with room to spare. */
const FILE_RATE = 6000;

const $ = (id) => document.getElementById(id);
const text = new TextDecoder();
const utf8 = new TextEncoder();

let sdk;
/** What belongs to the call we are in (null when not in one). */
let room = null;

function setStatus(message, state) {
  $("status").textContent = message;
  if (state) document.body.dataset.state = state;
}

/** A participant's colour: one of 12 hues, from a hash of the name (FNV-1a),
 *  the same on every page. */
function hue(name) {
  let h = 2166136261;
  for (const c of name) h = Math.imul(h ^ c.codePointAt(0), 16777619) >>> 0;
  return (h % 12) * 30;
}

function errorText(e) {
  return e && e.code ? `${e.code}: ${e.message}` : String(e && e.message ? e.message : e);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- joining

async function fetchToken(call, participant) {
  const res = await fetch(`/v1/calls/${encodeURIComponent(call)}/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ participant }),
  });
  if (res.status === 404) {
    throw new Error("this server hands out no demo tokens (serve --demo-tokens): paste one from `dcengine token`");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok || typeof body.token !== "string") {
    throw new Error(body.error || `token request failed: HTTP ${res.status}`);
  }
  return body.token;
}

async function join(callName, me, pastedToken) {
  setStatus(`Joining ${callName}…`, "joining");
  const token = pastedToken || (await fetchToken(callName, me));
  const call = await sdk.joinCall({ call: callName, participant: me, token, url: location.origin });
  const dc = call.feature(sdk.Features.DataChannel);
  room = { call, dc, me, callName, cursors: new Map(), incoming: new Map(), timers: [] };

  dc.on("dataChannelReceiverCreated", onReceiver);
  room.chat = dc.createDataChannelSender({ channelId: CHAT, reliability: "durable" });
  room.cursor = dc.createDataChannelSender({ channelId: CURSORS, reliability: "lossy", priority: "high" });
  room.files = dc.createDataChannelSender({ channelId: FILES, reliability: "durable" });
  room.fileQueue = Promise.resolve();

  call.on("remoteParticipantsUpdated", ({ added, removed }) => {
    for (const p of added) systemLine(`${p.identifier.communicationUserId} joined`);
    for (const p of removed) {
      const id = p.identifier.communicationUserId;
      systemLine(`${id} left`);
      removeCursor(id);
    }
    renderParticipants();
  });
  call.on("stateChanged", () => {
    if (call.state === "disconnected" && room && room.call === call) {
      systemLine("disconnected from the call");
      teardown(`Disconnected from ${callName}.`);
    }
  });

  startCursor();
  $("join-form").hidden = true;
  $("room").hidden = false;
  renderParticipants();
  setStatus(`In call ${callName} as ${me}.`, "joined");
  $("chat-input").focus();
}

function teardown(status) {
  if (!room) return;
  for (const t of room.timers) clearInterval(t);
  room = null;
  $("board").querySelectorAll(".cursor").forEach((el) => el.remove());
  $("room").hidden = true;
  $("join-form").hidden = false;
  $("join").disabled = false;
  setStatus(status, "left");
}

async function leave() {
  if (!room) return;
  const { call, callName } = room;
  teardown(`Left ${callName}.`);
  await call.leave().catch(() => {});
}

function renderParticipants() {
  const list = $("participants");
  list.replaceChildren();
  if (!room) return;
  const names = [room.me, ...room.call.remoteParticipants.map((p) => p.identifier.communicationUserId)];
  names.forEach((name, i) => {
    const li = document.createElement("li");
    li.dataset.participant = name;
    li.style.setProperty("--hue", hue(name));
    li.textContent = i === 0 ? `${name} (you)` : name;
    list.append(li);
  });
}

// ---------------------------------------------------------------- receiving

function onReceiver(receiver) {
  const from = receiver.senderParticipantIdentifier.communicationUserId;
  const handlers = { [CHAT]: chatMessage, [CURSORS]: cursorMessage, [FILES]: fileMessage };
  const handle = handlers[receiver.channelId];
  if (!handle) return; // another app's channel
  const state = { lastSeq: 0 };
  const drain = () => {
    if (!room) return;
    for (let m = receiver.readMessage(); m; m = receiver.readMessage()) handle(from, m, state);
  };
  receiver.on("messageReady", drain);
  receiver.on("close", () => {
    if (receiver.channelId === CURSORS) removeCursor(from);
    if (receiver.channelId === FILES) interruptFiles(from);
  });
  drain(); // anything that arrived with the receiver
}

function chatLine(from, body, cls) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  const who = document.createElement("b");
  who.textContent = from;
  who.style.setProperty("--hue", hue(from));
  li.append(who, `: ${body}`);
  appendMessage(li);
}

function systemLine(body) {
  const li = document.createElement("li");
  li.className = "system";
  li.textContent = body;
  appendMessage(li);
}

function appendMessage(li) {
  const list = $("messages");
  const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(li);
  if (atEnd) list.scrollTop = list.scrollHeight;
}

function chatMessage(from, m) {
  chatLine(from, text.decode(m.data));
}

// ---------------------------------------------------------------- chat

async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const body = input.value.trim();
  if (!body || !room) return;
  input.value = "";
  try {
    await room.chat.sendMessage(utf8.encode(body));
    chatLine(room.me, body, "self");
  } catch (e) {
    systemLine(`not sent (${errorText(e)}): ${body}`);
  }
}

// ---------------------------------------------------------------- cursors

/** Position as two u16 fractions of the board; 0xffff,0xffff: off the board. */
function startCursor() {
  const board = $("board");
  let pending = null; // [x, y] not sent yet
  let last = [0xffff, 0xffff];
  let lastSent = 0;
  const at = (e) => {
    const r = board.getBoundingClientRect();
    const f = (v) => Math.max(0, Math.min(0xfffe, Math.round(v * 0xfffe)));
    return [f((e.clientX - r.left) / r.width), f((e.clientY - r.top) / r.height)];
  };
  board.onpointermove = (e) => (pending = at(e));
  board.onpointerdown = (e) => (pending = at(e));
  board.onpointerleave = () => (pending = [0xffff, 0xffff]);
  const tick = () => {
    if (!room) return;
    const now = performance.now();
    const pos = pending || (last[0] !== 0xffff && now - lastSent > CURSOR_REFRESH_MS ? last : null);
    if (!pos) return;
    pending = null;
    last = pos;
    lastSent = now;
    const msg = new Uint8Array(4);
    new DataView(msg.buffer).setUint16(0, pos[0]);
    new DataView(msg.buffer).setUint16(2, pos[1]);
    // Lossy: a cursor that does not go out is replaced by the next one.
    room.cursor.sendMessage(msg).catch(() => {});
  };
  room.timers.push(setInterval(tick, 1000 / CURSOR_HZ));
}

function cursorMessage(from, m, state) {
  if (m.data.length < 4) return;
  // Lossy data may arrive out of order: only a newer position moves the dot.
  if (m.sequenceNumber <= state.lastSeq) return;
  state.lastSeq = m.sequenceNumber;
  const view = new DataView(m.data.buffer, m.data.byteOffset, 4);
  const x = view.getUint16(0);
  const y = view.getUint16(2);
  if (x === 0xffff) return removeCursor(from);
  let dot = room.cursors.get(from);
  if (!dot) {
    dot = document.createElement("div");
    dot.className = "cursor";
    dot.dataset.participant = from;
    dot.style.setProperty("--hue", hue(from));
    const label = document.createElement("span");
    label.textContent = from;
    dot.append(label);
    $("board").append(dot);
    room.cursors.set(from, dot);
  }
  dot.style.left = `${(x / 0xfffe) * 100}%`;
  dot.style.top = `${(y / 0xfffe) * 100}%`;
}

function removeCursor(from) {
  if (!room) return;
  const dot = room.cursors.get(from);
  if (dot) dot.remove();
  room.cursors.delete(from);
}

// ---------------------------------------------------------------- files

function fileHeader(kind, id, index, length) {
  const msg = new Uint8Array(FILE_HEADER + length);
  const view = new DataView(msg.buffer);
  view.setUint8(0, kind);
  view.setUint32(1, id);
  view.setUint32(5, index);
  return msg;
}

function fileEntry(label) {
  const li = document.createElement("li");
  const name = document.createElement("span");
  name.className = "file-name";
  name.textContent = label;
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  const state = document.createElement("span");
  state.className = "file-state";
  li.append(name, bar, state);
  $("files").append(li);
  return { li, bar, state };
}

function sizeText(n) {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

function offerFiles(list) {
  if (!room) return;
  for (const file of list) {
    // One file at a time: they share the Durable sender's rule.
    room.fileQueue = room.fileQueue.then(() => sendFile(file));
  }
}

async function sendFile(file) {
  const r = room;
  if (!r) return;
  const entry = fileEntry(`${file.name} (${sizeText(file.size)}) to everyone`);
  entry.li.className = "outgoing";
  const id = (Math.random() * 0xffffffff) >>> 0;
  const chunk = Math.max(1, Math.min(FILE_CHUNK_MAX, r.files.maxMessageSizeInBytes - FILE_HEADER));
  const chunks = Math.max(1, Math.ceil(file.size / chunk));
  const data = new Uint8Array(await file.arrayBuffer());
  const start = performance.now();
  let sentBytes = 0;
  const send = async (msg) => {
    // Paced: the next message leaves when the bytes so far fit FILE_RATE.
    const due = start + (sentBytes / FILE_RATE) * 1000;
    if (due > performance.now()) await sleep(due - performance.now());
    for (let attempt = 0; ; attempt++) {
      if (room !== r) throw new Error("left the call");
      try {
        await r.files.sendMessage(msg);
        break;
      } catch (e) {
        // Another sender of ours may have used the budget: wait and retry.
        if (e && e.code === "DataChannelMessageFailureForTrafficLimit" && attempt < 20) {
          await sleep(500);
          continue;
        }
        throw e;
      }
    }
    sentBytes += msg.length;
  };
  try {
    const meta = utf8.encode(JSON.stringify({ name: file.name, size: file.size, type: file.type, chunks }));
    const head = fileHeader(FILE_START, id, 0, meta.length);
    head.set(meta, FILE_HEADER);
    await send(head);
    for (let i = 0; i < chunks; i++) {
      const part = data.subarray(i * chunk, Math.min(file.size, (i + 1) * chunk));
      const msg = fileHeader(FILE_CHUNK, id, i, part.length);
      msg.set(part, FILE_HEADER);
      await send(msg);
      entry.bar.value = (i + 1) / chunks;
    }
    entry.state.textContent = "sent";
    entry.li.dataset.done = "1";
  } catch (e) {
    entry.state.textContent = `failed: ${errorText(e)}`;
  }
}

function fileMessage(from, m) {
  if (m.data.length < FILE_HEADER) return;
  const view = new DataView(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  const kind = view.getUint8(0);
  const key = `${from}/${view.getUint32(1)}`;
  const body = m.data.subarray(FILE_HEADER);
  if (kind === FILE_START) {
    let meta;
    try {
      meta = JSON.parse(text.decode(body));
    } catch {
      return;
    }
    const entry = fileEntry(`${meta.name} (${sizeText(meta.size)}) from ${from}`);
    entry.li.className = "incoming";
    room.incoming.set(key, { from, meta, parts: new Array(meta.chunks), got: 0, entry });
    return;
  }
  const f = room.incoming.get(key);
  if (kind !== FILE_CHUNK || !f) return;
  const index = view.getUint32(5);
  if (index >= f.meta.chunks || f.parts[index]) return;
  f.parts[index] = body.slice();
  f.got++;
  f.entry.bar.value = f.got / f.meta.chunks;
  if (f.got < f.meta.chunks) return;
  room.incoming.delete(key);
  const blob = new Blob(f.parts, { type: f.meta.type || "application/octet-stream" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = f.meta.name;
  link.textContent = blob.size === f.meta.size ? "download" : `download (${blob.size} of ${f.meta.size} B)`;
  f.entry.state.replaceChildren(link);
  f.entry.li.dataset.done = "1";
}

function interruptFiles(from) {
  if (!room) return;
  for (const [key, f] of room.incoming) {
    if (f.from !== from) continue;
    f.entry.state.textContent = "interrupted";
    room.incoming.delete(key);
  }
}

// ---------------------------------------------------------------- page

function wire() {
  const params = new URLSearchParams(location.search);
  for (const [param, field] of [["call", "call"], ["name", "name"], ["token", "token"]]) {
    if (params.has(param)) $(field).value = params.get(param);
  }
  $("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (room) return;
    $("join").disabled = true;
    const callName = $("call").value.trim();
    const me = $("name").value.trim();
    try {
      await join(callName, me, $("token").value.trim());
    } catch (e) {
      setStatus(`Could not join ${callName}: ${errorText(e)}`, "error");
      $("join").disabled = false;
    }
  });
  $("leave").addEventListener("click", leave);
  $("chat-form").addEventListener("submit", sendChat);
  $("file-input").addEventListener("change", (e) => {
    offerFiles(e.target.files);
    e.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    offerFiles(e.dataTransfer.files);
  });
  addEventListener("pagehide", () => room && room.call.leave().catch(() => {}));
  setStatus("Not in a call.", "ready");
  if (params.get("join") === "1" && $("name").value) $("join").click();
}

try {
  sdk = await import("./dcengine.js");
  wire();
} catch (e) {
  setStatus(`The client bundle did not load (npm run bundle builds web/dcengine.js): ${errorText(e)}`, "error");
}

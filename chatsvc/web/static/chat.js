// chatsvc's chat page: the tutorial's binary protocol over a WebSocket.
//
// Every packet is a 5-byte little-endian header (PacketLength uint16 for the
// whole packet, PacketId uint16, Type uint8) and a body; strings are
// fixed-size, NUL-padded UTF-8 fields. Each WebSocket message holds whole
// packets. Whatever a peer sent is put in the page as text, never as HTML.

const HEADER = 5;
const USER_ID_FIELD = 33;
const USER_PW_FIELD = 33;
const CHAT_MSG_FIELD = 257;
const MAX_USER_ID = 32;
const MAX_PASSWORD = 32;
const MAX_CHAT = 256;
const MAX_LOG_LINES = 500;

const ID = Object.freeze({
  LOGIN_REQUEST: 201,
  LOGIN_RESPONSE: 202,
  ROOM_ENTER_REQUEST: 206,
  ROOM_ENTER_RESPONSE: 207,
  ROOM_NEW_USER_NTF: 208,
  ROOM_USER_LIST_NTF: 209,
  ROOM_LEAVE_REQUEST: 215,
  ROOM_LEAVE_RESPONSE: 216,
  ROOM_LEAVE_USER_NTF: 217,
  ROOM_CHAT_REQUEST: 221,
  ROOM_CHAT_RESPONSE: 222,
  ROOM_CHAT_NOTIFY: 223,
});

const ACTIONS = Object.freeze({
  [ID.LOGIN_RESPONSE]: "login",
  [ID.ROOM_ENTER_RESPONSE]: "enter",
  [ID.ROOM_LEAVE_RESPONSE]: "leave",
  [ID.ROOM_CHAT_RESPONSE]: "chat",
});

// Why the server closed the WebSocket, by close code.
const CLOSE_REASONS = Object.freeze({
  1000: "The server closed the connection.",
  1001: "The server is shutting down.",
  1002: "The server refused what this page sent (protocol error).",
  1003: "The server refused what this page sent (protocol error).",
  1009: "A message was too big for the server.",
  1013: "The server is full; try again in a moment.",
});

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8"); // invalid bytes become U+FFFD

// --- the wire format ---------------------------------------------------------

function packet(id, body = new Uint8Array(0)) {
  const bytes = new Uint8Array(HEADER + body.length);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, bytes.length, true);
  view.setUint16(2, id, true);
  view.setUint8(4, 0);
  bytes.set(body, HEADER);
  return bytes;
}

function field(value, size) {
  const raw = utf8.encode(value);
  if (raw.length > size) {
    throw new RangeError(`${raw.length} bytes do not fit a ${size}-byte field`);
  }
  const bytes = new Uint8Array(size);
  bytes.set(raw);
  return bytes;
}

function loginRequest(user, password) {
  const body = new Uint8Array(USER_ID_FIELD + USER_PW_FIELD);
  body.set(field(user, USER_ID_FIELD));
  body.set(field(password, USER_PW_FIELD), USER_ID_FIELD);
  return packet(ID.LOGIN_REQUEST, body);
}

function enterRequest(room) {
  const body = new Uint8Array(4);
  new DataView(body.buffer).setInt32(0, room, true);
  return packet(ID.ROOM_ENTER_REQUEST, body);
}

const leaveRequest = () => packet(ID.ROOM_LEAVE_REQUEST);
const chatRequest = (message) => packet(ID.ROOM_CHAT_REQUEST, field(message, CHAT_MSG_FIELD));

function readField(bytes, offset, size) {
  const stop = Math.min(offset + size, bytes.length);
  let end = offset;
  while (end < stop && bytes[end] !== 0) end += 1;
  return fromUtf8.decode(bytes.subarray(offset, end));
}

// The packets of one message; a message that does not hold whole packets is
// an error, as it is on the server's side.
function* packetsOf(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < HEADER) throw new Error("a message ends inside a header");
    const length = view.getUint16(offset, true);
    if (length < HEADER || offset + length > bytes.length) {
      throw new Error(`a packet length of ${length}`);
    }
    yield {
      id: view.getUint16(offset + 2, true),
      body: bytes.subarray(offset + HEADER, offset + length),
      view: new DataView(buffer, offset + HEADER, length - HEADER),
    };
    offset += length;
  }
}

function userEntries(body, view, offset, count) {
  const users = [];
  for (let i = 0; i < count; i += 1) {
    const uid = view.getBigInt64(offset, true).toString();
    const size = view.getInt8(offset + 8);
    offset += 9;
    users.push({ uid, name: fromUtf8.decode(body.subarray(offset, offset + size)) });
    offset += size;
  }
  return users;
}

function parseEvent({ id, body, view }) {
  switch (id) {
    case ID.LOGIN_RESPONSE:
      return { kind: "response", id, result: view.getUint16(0, true) };
    case ID.ROOM_ENTER_RESPONSE:
    case ID.ROOM_LEAVE_RESPONSE:
    case ID.ROOM_CHAT_RESPONSE:
      return { kind: "response", id, result: view.getInt16(0, true) };
    case ID.ROOM_NEW_USER_NTF:
      return { kind: "joined", ...userEntries(body, view, 0, 1)[0] };
    case ID.ROOM_USER_LIST_NTF:
      return { kind: "list", users: userEntries(body, view, 1, body[0]) };
    case ID.ROOM_LEAVE_USER_NTF:
      return { kind: "left", uid: view.getBigInt64(0, true).toString() };
    case ID.ROOM_CHAT_NOTIFY:
      return {
        kind: "chat",
        user: readField(body, 0, USER_ID_FIELD),
        message: readField(body, USER_ID_FIELD, CHAT_MSG_FIELD),
      };
    default:
      return { kind: "unknown", id };
  }
}

// --- showing what peers sent ---------------------------------------------------

const CONTROL = /\p{Cc}/gu;
const INVISIBLE = /[\p{Cf}\p{Zl}\p{Zp}]/gu;

// A user id as the terminal client shows it: control characters become
// U+FFFD, and invisible format characters and line or paragraph separators
// (a right-to-left override, a zero-width space) are shown as <U+202E>, so
// that no two different ids look alike.
function shownName(name) {
  return name
    .replace(CONTROL, "\uFFFD")
    .replace(INVISIBLE, (ch) => `<U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}>`);
}

const shownText = (message) => message.replace(CONTROL, "\uFFFD");

// --- the page ------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const ui = {
  where: $("where"),
  leave: $("leave"),
  logout: $("logout"),
  banner: $("banner"),
  bannerText: $("banner-text"),
  reconnect: $("reconnect"),
  loginView: $("login-view"),
  loginForm: $("login-form"),
  loginButton: $("login-button"),
  user: $("user"),
  password: $("password"),
  loginError: $("login-error"),
  lobbyView: $("lobby-view"),
  roomList: $("room-list"),
  enterForm: $("enter-form"),
  roomNumber: $("room-number"),
  lobbyError: $("lobby-error"),
  roomView: $("room-view"),
  roomTitle: $("room-title"),
  memberCount: $("member-count"),
  members: $("members"),
  log: $("log"),
  chatForm: $("chat-form"),
  message: $("message"),
  send: $("send"),
  remaining: $("remaining"),
};

const state = {
  info: { rooms: { start: 0, count: 0 }, results: {} },
  socket: null,
  phase: "offline", // offline, login, lobby, room
  user: "",
  password: "",
  room: null,
  entering: [], // room numbers of enter requests not answered yet
  members: new Map(), // unique id -> user id, the others in the room
  restore: null, // after a reconnect: { room } to enter again once logged in
};

function sentence(id, result) {
  const known = state.info.results[id]?.[result];
  return known ?? `${ACTIONS[id] ?? id} failed: ${result} (unknown result code)`;
}

function setPhase(phase) {
  state.phase = phase;
  document.body.dataset.phase = phase;
  ui.loginView.hidden = phase !== "login" && phase !== "offline";
  ui.lobbyView.hidden = phase !== "lobby";
  ui.roomView.hidden = phase !== "room";
  ui.leave.hidden = phase !== "room";
  ui.logout.hidden = phase !== "lobby" && phase !== "room";
  const who = state.user ? shownName(state.user) : "";
  ui.where.textContent =
    phase === "room" ? `${who} · room ${state.room}` : phase === "lobby" ? who : "";
  if (phase === "room") ui.message.focus();
  if (phase === "lobby") ui.lobbyError.textContent = "";
}

function setConnected(connected) {
  for (const control of [ui.loginButton, ui.send, ui.leave]) {
    control.disabled = !connected;
  }
  for (const button of ui.roomList.querySelectorAll("button")) button.disabled = !connected;
  ui.enterForm.querySelector("button").disabled = !connected;
}

function send(bytes) {
  if (state.socket?.readyState !== WebSocket.OPEN) return false;
  state.socket.send(bytes);
  return true;
}

function bytesOf(text) {
  return utf8.encode(text).length;
}

// --- the chat log and the member list -------------------------------------------

function appendLine(item) {
  const log = ui.log;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(item);
  while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function timeStamp() {
  const now = new Date();
  const time = document.createElement("time");
  time.className = "time";
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return time;
}

function notice(text, kind = "notice") {
  const item = document.createElement("li");
  item.className = kind;
  item.append(timeStamp(), text);
  appendLine(item);
}

function chatLine(user, message) {
  const item = document.createElement("li");
  item.className = user === state.user ? "chat mine" : "chat";
  const sender = document.createElement("span");
  sender.className = "sender";
  sender.textContent = shownName(user);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = shownText(message);
  item.append(timeStamp(), sender, text);
  appendLine(item);
}

function nameOf(uid) {
  return state.members.get(uid) ?? `user #${uid}`;
}

function showMembers() {
  const items = [];
  const me = document.createElement("li");
  me.className = "me";
  me.textContent = `${shownName(state.user)} (you)`;
  items.push(me);
  for (const name of state.members.values()) {
    const item = document.createElement("li");
    item.textContent = shownName(name);
    items.push(item);
  }
  ui.members.replaceChildren(...items);
  const count = items.length;
  ui.memberCount.textContent = count === 1 ? "just you" : `${count} people`;
}

// --- what the server sends ------------------------------------------------------

function onResponse({ id, result }) {
  switch (id) {
    case ID.LOGIN_RESPONSE:
      ui.loginButton.disabled = false;
      if (result !== 0) {
        ui.loginError.textContent = sentence(id, result);
        state.restore = null;
        setPhase("login");
        return;
      }
      ui.loginError.textContent = "";
      setPhase("lobby");
      if (state.restore?.room != null) enter(state.restore.room);
      state.restore = null;
      return;
    case ID.ROOM_ENTER_RESPONSE: {
      const room = state.entering.shift();
      if (result !== 0) {
        ui.lobbyError.textContent = sentence(id, result);
        return;
      }
      state.room = room;
      state.members.clear();
      ui.log.replaceChildren();
      ui.roomTitle.textContent = `Room ${room}`;
      showMembers();
      setPhase("room");
      notice(`You entered room ${room}.`);
      return;
    }
    case ID.ROOM_LEAVE_RESPONSE:
      if (result !== 0) {
        notice(sentence(id, result), "failure");
        return;
      }
      state.room = null;
      state.members.clear();
      setPhase("lobby");
      return;
    case ID.ROOM_CHAT_RESPONSE:
      if (result !== 0) notice(sentence(id, result), "failure");
      return;
  }
}

function onEvent(event) {
  switch (event.kind) {
    case "response":
      onResponse(event);
      return;
    case "list":
      for (const { uid, name } of event.users) state.members.set(uid, name);
      showMembers();
      return;
    case "joined":
      state.members.set(event.uid, event.name);
      showMembers();
      notice(`${shownName(event.name)} entered the room.`);
      return;
    case "left": {
      const name = nameOf(event.uid);
      state.members.delete(event.uid);
      showMembers();
      notice(`${shownName(name)} left the room.`);
      return;
    }
    case "chat":
      chatLine(event.user, event.message);
      return;
  }
}

function onMessage(message) {
  if (!(message.data instanceof ArrayBuffer)) return;
  try {
    for (const raw of packetsOf(message.data)) onEvent(parseEvent(raw));
  } catch (error) {
    state.socket?.close(1002, "bad packet");
    showBanner(`The server sent something this page does not understand: ${error.message}.`);
  }
}

// --- the connection --------------------------------------------------------------

function showBanner(text) {
  ui.bannerText.textContent = text;
  ui.banner.hidden = false;
  ui.reconnect.disabled = false;
}

function connect() {
  const url = new URL("ws", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  state.entering = [];
  setConnected(false);
  socket.addEventListener("open", () => {
    if (state.socket !== socket) return;
    ui.banner.hidden = true;
    setConnected(true);
    if (state.restore && state.user) {
      login(state.user, state.password);
    } else {
      setPhase("login");
      ui.user.focus();
    }
  });
  socket.addEventListener("message", onMessage);
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (state.phase === "login" && !ui.loginButton.disabled) {
      // Closed while nobody was logging in (the server gives a connection
      // --login-timeout seconds to log in): the next login connects again.
      return;
    }
    setConnected(false);
    const was = state.phase;
    if (was === "room") state.restore = { room: state.room };
    else if (was === "lobby") state.restore = { room: null };
    if (was === "room") notice("Connection lost.", "failure");
    document.body.dataset.phase = "offline";
    const why = CLOSE_REASONS[event.code] ?? "The connection to the server was lost.";
    showBanner(was === "offline" ? `Cannot reach the server. ${why}` : why);
  });
}

function login(user, password) {
  state.user = user;
  state.password = password;
  ui.loginButton.disabled = true;
  if (!send(loginRequest(user, password))) {
    ui.loginButton.disabled = false;
    ui.loginError.textContent = "Not connected to the server.";
  }
}

function enter(room) {
  if (send(enterRequest(room))) state.entering.push(room);
}

// --- what the user does ------------------------------------------------------------

ui.loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const user = ui.user.value.trim();
  const password = ui.password.value;
  if (!user) {
    ui.loginError.textContent = "Type a user id.";
    return;
  }
  if (bytesOf(user) > MAX_USER_ID || bytesOf(password) > MAX_PASSWORD) {
    ui.loginError.textContent = `The user id and the password may have at most ${MAX_USER_ID} bytes each.`;
    return;
  }
  ui.loginError.textContent = "";
  if (state.socket === null) {
    // The connection was closed while the page waited: log in once reopened.
    state.user = user;
    state.password = password;
    state.restore = { room: null };
    connect();
    return;
  }
  login(user, password);
});

ui.enterForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const room = Number(ui.roomNumber.value);
  if (ui.roomNumber.value === "" || !Number.isInteger(room) || Math.abs(room) > 2 ** 31 - 1) {
    ui.lobbyError.textContent = "Type a room number.";
    return;
  }
  enter(room);
});

ui.roomList.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-room]");
  if (button) enter(Number(button.dataset.room));
});

ui.chatForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const message = ui.message.value;
  if (!message || bytesOf(message) > MAX_CHAT) return;
  if (send(chatRequest(message))) {
    ui.message.value = "";
    showRemaining();
  }
});

function showRemaining() {
  const left = MAX_CHAT - bytesOf(ui.message.value);
  ui.remaining.classList.toggle("over", left < 0);
  ui.remaining.textContent =
    left < 0 ? `Too long by ${-left} bytes.` : left < 64 ? `${left} bytes left.` : "";
  ui.send.disabled = left < 0 || state.socket === null;
}
ui.message.addEventListener("input", showRemaining);

ui.leave.addEventListener("click", () => {
  send(leaveRequest());
});

ui.logout.addEventListener("click", () => {
  // The protocol has no log-out request: a new connection is a new session.
  state.user = "";
  state.password = "";
  state.room = null;
  state.restore = null;
  state.members.clear();
  ui.log.replaceChildren();
  ui.password.value = "";
  const socket = state.socket;
  state.socket = null;
  socket?.close(1000, "log out");
  setPhase("login");
  connect();
});

ui.reconnect.addEventListener("click", () => {
  ui.reconnect.disabled = true;
  ui.bannerText.textContent = "Reconnecting…";
  connect();
});

function showRooms({ start, count }) {
  ui.roomNumber.min = String(start);
  ui.roomNumber.max = String(start + count - 1);
  ui.roomNumber.placeholder = count ? `${start} to ${start + count - 1}` : "";
  if (count > 48) return;
  const buttons = [];
  for (let room = start; room < start + count; room += 1) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.room = String(room);
    button.textContent = `Room ${room}`;
    buttons.push(button);
  }
  ui.roomList.replaceChildren(...buttons);
}

async function start() {
  setPhase("offline");
  try {
    const response = await fetch("server.json", { cache: "no-cache" });
    if (response.ok) state.info = await response.json();
  } catch {
    // The page still works; result codes are then shown by number.
  }
  showRooms(state.info.rooms);
  connect();
}

start();

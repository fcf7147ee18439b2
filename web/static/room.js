// The room and viewer pages: socket.io signaling (docs/protocol.md), lobby, people, chat, hands,
// moderation, and the media the page publishes and receives (media.js, tiles.js, devices.js).
// Every name and message from others goes into the page with textContent.
"use strict";

(() => {
  const { config, t, el, icon, toast } = Veche;
  const RANK = { viewer: 0, participant: 1, speaker: 2, moderator: 3, host: 4 };
  const ROLE_NAMES = {
    host: t("Host"),
    moderator: t("Moderator"),
    speaker: t("Speaker"),
    participant: t("Participant"),
    viewer: t("Viewer"),
  };
  const $ = (id) => document.getElementById(id);
  const identity = config.token || "watch:" + config.meeting_id;
  const seatKey = "veche:seat:" + identity;
  const prefsKey = "veche:prefs:" + identity;
  const prefs = JSON.parse(sessionStorage.getItem(prefsKey) || "{}");

  const state = {
    self: null,
    participants: new Map(),
    hands: [],
    lobby: [],
    locked: false,
    finished: false,
    // What this page captures: the microphone and camera tracks and the screen's stream.
    local: { audio: null, video: null, screen: null },
    on: { mic: false, camera: false, screen: false },
    publisher: null,
    subscriber: null,
    iceServers: [],
    rebuilding: false,
    tracks: [], // every published Track in the room
    media: new Map(), // track id -> the MediaStreamTrack we receive
    speaking: new Set(),
    active: null,
    paused: new Set(), // our video the server paused for a slow link
    audioOnly: false,
    // The broadcast's stage (docs/protocol.md `stage`): what viewers see.
    stage: { mode: "auto", spotlight: null, floor: [], tracks: [] },
  };
  window.VecheRoom = { state }; // for the browser tests (getStats(), a dropped socket)
  const codec = (new URLSearchParams(location.search).get("codec") || "VP8").toUpperCase();
  // Without WebRTC (an old or locked-down browser) the viewer page plays HLS (hls_player.js).
  const webrtc = typeof RTCPeerConnection !== "undefined";

  // --- small views ---

  function setConnection(kind) {
    const pill = $("connection");
    const labels = {
      connecting: t("Connecting…"),
      connected: t("Connected"),
      reconnecting: t("Reconnecting…"),
      closed: t("Disconnected"),
    };
    pill.textContent = labels[kind];
    pill.className = "pill pill-" + kind;
  }

  function showLobby(position) {
    $("lobby-view").hidden = false;
    $("lobby-position").textContent = position
      ? t("Your place in the queue: {n}").replace("{n}", String(position))
      : "";
  }

  function finish(title, detail, rejoin) {
    state.finished = true;
    sessionStorage.removeItem(seatKey);
    socket.disconnect();
    stopMedia();
    $("lobby-view").hidden = true;
    $("end-title").textContent = title;
    $("end-detail").textContent = detail || "";
    const again = $("rejoin");
    again.hidden = !rejoin;
    again.href = config.join_url || location.pathname + location.search;
    $("end-view").hidden = false;
    setConnection("closed");
  }

  // --- what this page sends (local.js) ---

  const local = VecheLocal.create({
    state,
    prefs,
    codec,
    can,
    render: () => render(),
    setConnection,
    socket: () => socket,
    savePrefs: () => sessionStorage.setItem(prefsKey, JSON.stringify(prefs)),
  });
  const { stopMedia, mediaError, setMic, setCamera, startScreen, stopScreen, sendState } = local;

  // --- permissions ---

  function can(permission) {
    return Boolean(state.self && state.self.permissions && state.self.permissions.includes(permission));
  }

  function assignable(target) {
    const actor = state.self.role;
    if (!can("assign_roles") || target.id === state.self.id) return [];
    if (actor === "host") return Object.keys(RANK);
    if (RANK[target.role] >= RANK[actor]) return [];
    return Object.keys(RANK).filter((role) => RANK[role] <= RANK[actor]);
  }

  // --- rendering ---

  function stateIcons(person) {
    const icons = [];
    if (person.hand) icons.push(icon("hand", t("Hand raised")));
    if (person.mic) icons.push(icon("mic", t("Microphone on")));
    else if (person.role !== "viewer") icons.push(icon("micOff", t("Microphone off")));
    if (person.camera) icons.push(icon("camera", t("Camera on")));
    if (person.screen) icons.push(icon("screen", t("Sharing the screen")));
    if (state.stage.spotlight === person.id) icons.push(el("span", "badge", t("Spotlight")));
    else if (state.stage.floor.includes(person.id)) icons.push(el("span", "badge", t("Has the floor")));
    if (!person.connected) icons.push(icon("away", t("Reconnecting…")));
    return icons;
  }

  function action(label, run, className) {
    const button = el("button", "small " + (className || ""), label);
    button.type = "button";
    button.addEventListener("click", run);
    return button;
  }

  function emit(event, payload) {
    socket.emit(event, payload, ackErrors);
  }

  function ackErrors(ack) {
    if (ack && ack.error) toast(ack.error.message);
  }

  function sortedPeople() {
    const handOrder = (p) => {
      const i = state.hands.indexOf(p.id);
      return i < 0 ? Infinity : i;
    };
    return [...state.participants.values()].sort((a, b) =>
      (state.self && b.id === state.self.id) - (state.self && a.id === state.self.id) ||
      handOrder(a) - handOrder(b) ||
      RANK[b.role] - RANK[a.role] ||
      a.name.localeCompare(b.name));
  }

  function renderPeople(people) {
    const list = $("people");
    const template = $("person-row");
    list.replaceChildren();
    for (const person of people) {
      const row = template.content.firstElementChild.cloneNode(true);
      row.dataset.id = person.id;
      const isSelf = state.self && person.id === state.self.id;
      row.querySelector(".person-name").textContent = person.name + (isSelf ? " (" + t("you") + ")" : "");
      row.querySelector(".person-role").textContent = ROLE_NAMES[person.role] || person.role;
      row.querySelector(".person-state").replaceChildren(...stateIcons(person));
      const actions = row.querySelector(".person-actions");
      if (!isSelf && can("moderate")) {
        if (person.hand) actions.append(action(t("Lower hand"), () => emit("hand", { raised: false, id: person.id })));
        actions.append(...muteActions(person));
      }
      if (can("moderate") && person.role !== "viewer") actions.append(...stageActions(person));
      const roles = state.self ? assignable(person) : [];
      if (roles.length) {
        const select = el("select", "small");
        select.setAttribute("aria-label", t("Role") + ": " + person.name);
        for (const role of roles) {
          const option = el("option", "", ROLE_NAMES[role]);
          option.value = role;
          option.selected = role === person.role;
          select.appendChild(option);
        }
        select.addEventListener("change", () => emit("set_role", { id: person.id, role: select.value }));
        actions.append(select);
      }
      if (!isSelf && can("moderate") && RANK[person.role] < RANK[state.self.role]) {
        actions.append(action(t("Remove"), () => {
          if (confirm(t("Remove this person from the meeting?") + "\n" + person.name)) emit("remove", { id: person.id });
        }, "danger"));
      }
      list.appendChild(row);
    }
    $("people-count").textContent = String(people.length);
  }

  // The broadcast's stage: a moderator spotlights one person or gives several the floor.
  function stageActions(person) {
    const spotlit = state.stage.spotlight === person.id;
    const floor = state.stage.floor.includes(person.id);
    return [
      action(spotlit ? t("End spotlight") : t("Spotlight"),
        () => emit("spotlight", { participant: spotlit ? null : person.id }), spotlit ? "on" : ""),
      action(floor ? t("Take the floor") : t("Give the floor"),
        () => emit("floor", { participant: person.id, on: !floor }), floor ? "on" : ""),
    ];
  }

  function onStage() {
    const ids = new Set(state.stage.tracks || []);
    return new Set(state.tracks.filter((info) => ids.has(info.id)).map((info) => info.participant));
  }

  function muteActions(person) {
    if (!person.mic || !can("moderate") || (state.self && person.id === state.self.id)) return [];
    return [
      action(t("Mute"), () => emit("mute", { id: person.id })),
      action(t("Ask to mute"), () => emit("ask_mute", { id: person.id })),
    ];
  }

  const stage = VecheTiles.create({
    stage: document.querySelector(".stage"),
    tiles: $("tiles"),
    screen: $("screen"),
    sounds: $("sounds"),
    soundNotice: $("sound-notice"),
    icons: stateIcons,
    actions: muteActions,
    onVisible: (track, on) => socket && socket.connected && socket.emit("video", { track, on }, () => {}),
  });

  function renderTiles(people) {
    const received = state.tracks.filter((info) => state.media.has(info.id));
    let active = state.active;
    if (config.watch) {
      // A viewer sees the stage: its people only (and itself once given the floor), the
      // spotlit person large.
      const shownIds = onStage();
      people = people.filter((p) => shownIds.has(p.id) || (state.self && p.id === state.self.id && state.self.role !== "viewer"));
      active = state.stage.spotlight || active;
      const shown = received.length > 0 || state.on.camera || Boolean(state.local.screen);
      $("broadcast").hidden = shown;
      $("tiles").hidden = !shown;
    }
    stage.update({
      people,
      selfId: state.self && state.self.id,
      local: {
        camera: state.on.camera ? state.local.video : null,
        screen: state.local.screen,
      },
      tracks: state.tracks,
      media: state.media,
      speaking: state.speaking,
      active,
      paused: state.paused,
      audioOnly: state.audioOnly,
    });
  }

  function renderLobby() {
    const panel = $("lobby-panel");
    panel.hidden = !can("moderate");
    if (panel.hidden) return;
    const list = $("lobby-list");
    list.replaceChildren();
    for (const entry of state.lobby) {
      const row = el("li", "person");
      const main = el("span", "person-main");
      main.append(el("span", "person-name", entry.name), " ",
        el("span", "person-role muted", (ROLE_NAMES[entry.role] || entry.role) + (entry.roster ? "" : " · " + t("guest"))));
      const place = [entry.school, entry.region].filter(Boolean).join(", ");
      if (place) main.append(el("br"), el("span", "muted", place));
      const actions = el("span", "person-actions");
      actions.append(action(t("Admit"), () => emit("admit", { id: entry.id }), "primary"),
        action(t("Deny"), () => emit("deny", { id: entry.id }), "danger"));
      row.append(main, actions);
      list.appendChild(row);
    }
    $("lobby-count").textContent = state.lobby.length ? String(state.lobby.length) : "";
    $("admit-all").hidden = state.lobby.length < 2;
    if (!state.lobby.length) list.appendChild(el("li", "muted", t("Nobody is waiting.")));
  }

  // A viewer given the floor gets the room page's publish controls, with a notice; taken
  // back, the controls go (republish() has stopped the camera and microphone by then).
  function placeSpeakControls() {
    const template = $("speak-controls");
    if (!template) return;
    const may = can("publish_audio") || can("publish_video");
    const placed = document.querySelector(".controls .speak-controls");
    if (may && !placed) {
      template.after(template.content.firstElementChild.cloneNode(true));
      bindMediaControls();
    } else if (!may && placed) {
      placed.remove();
    }
  }

  function renderControls() {
    placeSpeakControls();
    const self = state.self;
    const raised = Boolean(self && state.hands.includes(self.id));
    const hand = $("hand-toggle");
    hand.hidden = !can("raise_hand");
    hand.setAttribute("aria-pressed", String(raised));
    hand.querySelector("span").textContent = raised ? t("Lower hand") : t("Raise hand");
    const toggles = [
      ["mic-toggle", "publish_audio", state.on.mic],
      ["camera-toggle", "publish_video", state.on.camera],
      ["screen-toggle", "publish_screen", state.on.screen],
      ["devices-toggle", "publish_video", false],
    ];
    for (const [id, permission, on] of toggles) {
      const button = $(id);
      if (!button) continue;
      button.hidden = !can(permission) && !(id === "devices-toggle" && can("publish_audio"));
      if (id !== "devices-toggle") button.setAttribute("aria-pressed", String(on));
    }
    if ($("screen-toggle")) {
      $("screen-toggle").querySelector("span").textContent = state.on.screen ? t("Stop sharing") : t("Share screen");
      if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) $("screen-toggle").hidden = true;
    }
    const audioOnly = $("audio-only-toggle");
    audioOnly.setAttribute("aria-pressed", String(state.audioOnly));
    document.querySelector(".moderation").hidden = !can("moderate");
    const lock = $("lock-toggle");
    lock.setAttribute("aria-pressed", String(state.locked));
    lock.textContent = state.locked ? t("Unlock") : t("Lock");
    $("chat-form").hidden = !can("chat");
    const admin = $("admin-link");
    admin.hidden = !config.admin_url;
    if (config.admin_url) admin.href = config.admin_url;
  }

  function render() {
    for (const person of state.participants.values()) person.hand = state.hands.includes(person.id);
    const people = sortedPeople();
    renderPeople(people);
    renderTiles(people);
    renderLobby();
    renderControls();
  }

  function addChat(message) {
    const log = $("chat-log");
    const item = el("li", "chat-message");
    const head = el("div", "chat-head");
    const time = el("time", "muted");
    time.dateTime = message.at;
    const moment = new Date(message.at);
    time.textContent = isNaN(moment) ? "" : moment.toLocaleTimeString(config.lang, { hour: "2-digit", minute: "2-digit" });
    head.append(el("strong", "chat-name", message.name), " ", time);
    item.append(head, el("div", "chat-text", message.text));
    if (state.self && message.from === state.self.id) item.classList.add("mine");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(item);
    while (log.children.length > 200) log.firstElementChild.remove();
    if (atBottom || item.classList.contains("mine")) log.scrollTop = log.scrollHeight;
  }

  $("hand-toggle").prepend(icon("hand"));

  // The microphone, camera, screen and device controls, wherever they are in the page now.
  function bindMediaControls() {
    for (const [id, name] of [["mic-toggle", "mic"], ["camera-toggle", "camera"], ["screen-toggle", "screen"]]) {
      if ($(id)) $(id).prepend(icon(name));
    }
    if ($("mic-toggle")) $("mic-toggle").addEventListener("click", () => setMic(!state.on.mic));
    if ($("camera-toggle")) $("camera-toggle").addEventListener("click", () => setCamera(!state.on.camera));
    if ($("screen-toggle")) $("screen-toggle").addEventListener("click", () => (state.on.screen ? stopScreen() : startScreen()));
    if ($("devices-toggle")) VecheDevices.menu($("devices-toggle"), $("devices-menu"), () => state.local, local.switchDevice);
  }
  bindMediaControls();

  // --- signaling ---

  if (typeof io === "undefined") {
    $("end-title").textContent = t("The page cannot connect");
    $("end-detail").textContent = t("The page's scripts are not installed on the server: run npm ci in the Veche folder and restart it.");
    $("end-view").hidden = false;
    return;
  }

  const socket = io(config.namespace, { path: config.socket_path, autoConnect: false });
  window.VecheRoom.socket = socket;
  let retriedWithoutSeat = false;
  let lobbyToast = null;

  function join() {
    const payload = {};
    if (config.token) payload.token = config.token;
    else payload.meeting = config.meeting_id;
    const name = prefs.name || config.name;
    if (name && (config.guest || !config.token)) payload.name = name;
    const seat = sessionStorage.getItem(seatKey);
    if (seat) payload.seat = seat;
    socket.emit("join", payload, (ack) => {
      if (!ack || ack.ok) {
        if (ack && ack.status === "lobby") showLobby(ack.position);
        return;
      }
      if (seat && !retriedWithoutSeat) {
        // The seat may have lapsed after a long break: enter afresh.
        retriedWithoutSeat = true;
        sessionStorage.removeItem(seatKey);
        join();
        return;
      }
      const headings = {
        bad_token: t("This link does not work"),
        locked: t("The meeting is locked"),
        full: t("The meeting is full"),
        viewers_not_allowed: t("This meeting has no broadcast viewers"),
        already_joined: t("You are already in this meeting in another window"),
        not_found: t("Meeting not found"),
      };
      finish(headings[ack.error.code] || t("Could not join the meeting"), ack.error.message, ack.error.code === "locked");
    });
  }

  socket.on("connect", () => {
    setConnection(state.rebuilding ? "reconnecting" : "connected");
    retriedWithoutSeat = false;
    join();
  });
  socket.on("disconnect", (reason) => {
    if (state.finished) return;
    local.closeConnections();
    render();
    setConnection("reconnecting");
    // A disconnect by the server is not retried by socket.io itself.
    if (reason === "io server disconnect") setTimeout(() => state.finished || socket.connect(), 1000);
  });
  socket.on("connect_error", () => state.finished || setConnection("reconnecting"));

  socket.on("joined", (snapshot) => {
    state.self = snapshot.self;
    sessionStorage.setItem(seatKey, snapshot.seat);
    state.participants = new Map(snapshot.participants.map((p) => [p.id, p]));
    state.hands = snapshot.hands || [];
    state.lobby = snapshot.lobby || [];
    state.locked = Boolean(snapshot.meeting && snapshot.meeting.locked);
    $("lobby-view").hidden = true;
    $("chat-log").replaceChildren();
    for (const message of snapshot.chat || []) addChat(message);
    state.iceServers = snapshot.ice_servers || [];
    state.tracks = snapshot.tracks || [];
    if (snapshot.stage) state.stage = snapshot.stage;
    state.paused = new Set();
    state.rebuilding = false;
    setConnection("connected");
    render();
    sendState();
    if (state.audioOnly) emit("audio_only", { on: true });
    if (webrtc) local.connectMedia();
  });
  socket.on("lobby", (data) => showLobby(data.position));
  socket.on("admitted", () => { $("lobby-position").textContent = t("Admitted: entering…"); });
  socket.on("denied", (data) => finish(t("The moderator did not let you in"), data.message, false));
  socket.on("participant_joined", (person) => {
    state.participants.set(person.id, person);
    render();
  });
  socket.on("participant_updated", (person) => {
    state.participants.set(person.id, person);
    if (state.self && person.id === state.self.id) state.self = { ...state.self, ...person };
    render();
  });
  socket.on("participant_left", (data) => {
    state.participants.delete(data.id);
    state.hands = state.hands.filter((id) => id !== data.id);
    render();
  });
  socket.on("you", (self) => {
    const before = state.self && state.self.role;
    const publishing = (who) => (who && who.permissions ? who.permissions.filter((p) => p.startsWith("publish_")).sort().join() : "");
    const changed = publishing(state.self) !== publishing(self);
    state.self = self;
    state.participants.set(self.id, self);
    if (before && before !== self.role) toast(t("Your role is now: {role}").replace("{role}", ROLE_NAMES[self.role] || self.role));
    render();
    if (changed) local.republish();
  });
  socket.on("lobby_updated", (data) => {
    const before = state.lobby.length;
    state.lobby = data.lobby || [];
    if (state.lobby.length > before && !(lobbyToast && lobbyToast.isConnected)) {
      lobbyToast = toast(t("Someone is waiting in the lobby"));
    }
    if (!state.lobby.length && lobbyToast) lobbyToast.remove();
    render();
  });
  socket.on("hands", (data) => {
    state.hands = data.hands || [];
    render();
  });
  socket.on("chat", addChat);
  socket.on("locked", (data) => {
    state.locked = Boolean(data.locked);
    toast(state.locked ? t("The meeting is locked") : t("The meeting is unlocked"));
    render();
  });
  socket.on("mute_request", (data) => {
    toast(t("{name} asks you to mute your microphone").replace("{name}", data.by), {
      label: t("Mute"),
      run: () => state.on.mic && setMic(false),
    });
  });
  socket.on("muted", (data) => {
    setMic(false);
    toast(t("{name} muted your microphone").replace("{name}", data.by));
  });
  socket.on("subscribe_offer", (data) => {
    if (!webrtc) return;
    if (!state.subscriber) state.subscriber = local.newSubscriber();
    state.subscriber.offer(data).catch((error) => toast(t("Could not receive the others' audio and video:") + " " + error.message));
  });
  socket.on("tracks", (data) => {
    state.tracks = data.tracks || [];
    render();
  });
  socket.on("stage", (data) => {
    state.stage = data;
    render();
  });
  socket.on("speaking", (data) => {
    state.speaking = new Set(data.speaking || []);
    state.active = data.active || null;
    renderTiles(sortedPeople());
  });
  socket.on("video_paused", (data) => {
    state.paused = new Set(data.tracks || []);
    renderTiles(sortedPeople());
  });
  socket.on("removed", (data) => finish(t("You were removed from the meeting"), data.message, true));
  socket.on("ended", (data) => finish(t("The meeting has ended"), data.message, false));
  socket.on("server_stopping", () => {
    setConnection("reconnecting");
    toast(t("The server is restarting. The page will reconnect by itself."));
  });
  // Every event this page sends asks for an ack and shows a refusal from it; the `error` event
  // repeats the same refusal for clients without acks, so it is not shown twice.
  socket.on("error", () => {});

  // --- controls ---

  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    socket.emit("chat", { text }, (ack) => {
      if (ack && ack.error) toast(ack.error.message);
      else input.value = "";
    });
  });
  $("hand-toggle").addEventListener("click", () => {
    emit("hand", { raised: !state.hands.includes(state.self.id) });
  });
  $("audio-only-toggle").addEventListener("click", () => {
    state.audioOnly = !state.audioOnly;
    emit("audio_only", { on: state.audioOnly });
    render();
  });
  $("lock-toggle").addEventListener("click", () => emit("lock", { locked: !state.locked }));
  $("admit-all").addEventListener("click", () => emit("admit_all", {}));
  $("end-meeting").addEventListener("click", () => {
    if (confirm(t("End the meeting for everyone?"))) emit("end", {});
  });
  for (const button of document.querySelectorAll("button.leave")) {
    button.addEventListener("click", () => {
      socket.emit("leave", {});
      finish(t("You left the meeting"), "", true);
    });
  }

  async function begin() {
    setConnection("connecting");
    if (!config.watch && config.guest && !prefs.name) {
      location.href = config.join_url; // a guest names themselves on the join page first
      return;
    }
    await local.startMedia();
    render();
    socket.connect();
  }

  const nameForm = $("name-form");
  if (nameForm && !prefs.name) {
    nameForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = $("viewer-name").value.trim();
      if (!name) return;
      prefs.name = name;
      sessionStorage.setItem(prefsKey, JSON.stringify(prefs));
      $("name-view").hidden = true;
      begin();
    });
  } else {
    if (nameForm) $("name-view").hidden = true;
    begin();
  }
})();

// The hall's projector (docs/hall.md): the remote speakers full screen with their names and
// sound, the active speaker large; no controls. It joins with the hall's link as a hidden,
// receive-only seat that gets every track but the hall's own (no echo of the hall's sound).
// It obeys the hall's roster entry's rules: it may wait in the lobby, and a moderator may deny
// or remove it, after which it stays out (no retry) until the page is opened again.
"use strict";

(() => {
  const { config, t } = Veche;
  const $ = (id) => document.getElementById(id);
  const RETRY_MS = 5000;
  const state = {
    self: null, people: new Map(), tracks: [], media: new Map(), speaking: new Set(),
    active: null, subscriber: null, iceServers: [], retry: 0, ended: false, sent: false,
  };
  const socket = io(config.namespace, { path: config.socket_path, autoConnect: false });
  const tiles = VecheTiles.create({
    stage: $("stage"),
    tiles: $("tiles"),
    screen: $("screen"),
    sounds: $("sounds"),
    soundNotice: $("sound-notice"),
    icons: (person) => (person.mic ? [] : [Veche.icon("micOff", t("Microphone off"))]),
    actions: () => [],
    onVisible: () => {},
  });

  function status(text) {
    const node = $("projector-status");
    node.textContent = text || "";
    node.hidden = !text;
  }

  // The people shown: those whose media arrives (the hall's own never does).
  function render() {
    const sending = new Set(state.tracks.filter((info) => state.media.has(info.id)).map((info) => info.participant));
    const people = [...state.people.values()]
      .filter((person) => sending.has(person.id))
      .sort((a, b) => a.name.localeCompare(b.name));
    tiles.update({
      people, selfId: state.self, local: { camera: null, screen: null }, tracks: state.tracks,
      media: state.media, speaking: state.speaking, active: state.active, paused: new Set(), audioOnly: false,
    });
    // The active speaker large: by CSS order, so no playing <video> is moved in the page.
    const lead = people.length > 1 && people.some((p) => p.id === state.active) ? state.active : null;
    $("tiles").classList.toggle("led", lead !== null);
    for (const tile of $("tiles").children) tile.classList.toggle("lead", tile.dataset.id === lead);
    if (state.self) status(people.length ? "" : t("Nobody is speaking from afar yet."));
  }

  function reset() {
    if (state.subscriber) state.subscriber.close();
    state.subscriber = null;
    state.self = null;
    state.media = new Map();
  }

  function join() {
    clearTimeout(state.retry);
    socket.emit("join", { token: config.token, projector: true }, (ack) => {
      if (ack && ack.status === "lobby") status(t("Waiting for a moderator to let the hall in"));
      if (!ack || !ack.error) return;
      status(ack.error.code === "not_live" ? t("Waiting for the meeting to start…") : ack.error.message);
      if (ack.error.code === "not_live" || ack.error.code === "rate_limited") {
        state.retry = setTimeout(join, RETRY_MS);
      }
    });
  }

  // A broken connection: join again over a new socket (the server drops the old seat).
  function rebuild() {
    reset();
    socket.disconnect();
    socket.connect();
  }

  socket.on("connect", join);
  socket.on("disconnect", (reason) => {
    reset();
    if (!state.ended && !state.sent) status(t("Reconnecting…"));
    // The server closed this connection (the meeting ended, a restart): come back later.
    if (reason === "io server disconnect" && !state.sent) {
      clearTimeout(state.retry);
      state.retry = setTimeout(() => socket.connect(), RETRY_MS);
    }
  });
  socket.on("joined", (snapshot) => {
    reset();
    state.ended = false;
    state.self = snapshot.self.id;
    state.iceServers = snapshot.ice_servers || [];
    state.people = new Map(snapshot.participants.map((person) => [person.id, person]));
    state.tracks = snapshot.tracks || [];
    state.speaking = new Set((snapshot.speaking || {}).speaking || []);
    state.active = (snapshot.speaking || {}).active || null;
    state.subscriber = new VecheMedia.Subscriber(socket, state.iceServers, {
      onBroken: rebuild,
      onChange: (received) => {
        state.media = received;
        render();
      },
    });
    render();
  });
  socket.on("subscribe_offer", (data) => {
    if (state.subscriber) state.subscriber.offer(data).catch(() => {});
  });
  socket.on("participant_joined", (person) => {
    state.people.set(person.id, person);
    render();
  });
  socket.on("participant_updated", (person) => {
    state.people.set(person.id, person);
    render();
  });
  socket.on("participant_left", (data) => {
    state.people.delete(data.id);
    render();
  });
  socket.on("tracks", (data) => {
    state.tracks = data.tracks;
    render();
  });
  socket.on("speaking", (data) => {
    state.speaking = new Set(data.speaking);
    state.active = data.active;
    render();
  });
  // The meeting ended: wait for the next one on the same link.
  socket.on("ended", () => {
    reset();
    state.ended = true;
    state.people = new Map();
    render();
    status(t("The meeting has ended"));
  });
  // A moderator sent the projector away: it stays away until the page is opened again.
  for (const event of ["denied", "removed"]) {
    socket.on(event, (data) => {
      state.sent = true;
      clearTimeout(state.retry);
      reset();
      state.people = new Map();
      render();
      status((data && data.message) || "");
    });
  }
  socket.on("error", () => {});

  status(t("Connecting…"));
  socket.connect();
})();

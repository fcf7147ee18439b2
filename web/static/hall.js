// The hall station (docs/hall.md): the hall's one camera and one microphone chain, sent into
// the meeting as the hall's roster entry over media.js's publish connection. Large controls:
// start/stop sending, mute, the camera and microphone to use, a level meter.
"use strict";

(() => {
  const { config, t, toast } = Veche;
  const $ = (id) => document.getElementById(id);
  const seatKey = "veche:hall-seat:" + config.meeting_id;
  const prefsKey = "veche:hall-devices";
  const prefs = JSON.parse(localStorage.getItem(prefsKey) || "{}");
  const codec = new URLSearchParams(location.search).get("codec") || "";
  const state = {
    camera: null, mic: null, sending: false, muted: false, joined: false,
    lobby: null, publisher: null, iceServers: [], finished: false,
  };
  const socket = io(config.namespace, { path: config.socket_path, autoConnect: false });

  function render() {
    const send = $("send-toggle");
    send.textContent = state.sending ? t("Stop sending") : t("Start sending");
    send.classList.toggle("sending", state.sending);
    send.disabled = !state.joined || (!state.camera && !state.mic);
    const mute = $("mute-toggle");
    mute.textContent = state.muted ? t("Unmute microphone") : t("Mute microphone");
    mute.setAttribute("aria-pressed", String(state.muted));
    mute.disabled = !state.mic;
    $("preview-off").hidden = Boolean(state.camera);
    const status = $("hall-status");
    status.classList.toggle("live", state.sending);
    if (state.finished) return;
    if (state.lobby !== null) status.textContent = t("Waiting for a moderator to let the hall in");
    else if (!state.joined) status.textContent = t("Connecting…");
    else if (!state.sending) status.textContent = t("Not sending");
    else status.textContent = state.muted ? t("Sending the camera; the microphone is muted") : t("The hall is on the air");
  }

  function setConnection(text) {
    $("connection").textContent = text;
  }

  // capture

  async function capture(kind) {
    const id = kind === "video" ? prefs.camera : prefs.mic;
    try {
      return await VecheDevices.capture(kind, id);
    } catch (error) {
      toast((kind === "video" ? t("Camera") : t("Microphone")) + ": " + t("not available"));
      return null;
    }
  }

  async function fillDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [select, kind, track] of [
      [$("camera-select"), "videoinput", state.camera],
      [$("mic-select"), "audioinput", state.mic],
    ]) {
      const current = track ? track.getSettings().deviceId : "";
      select.replaceChildren();
      let n = 0;
      for (const device of devices) {
        if (device.kind !== kind) continue;
        n += 1;
        const label = device.label || (kind === "videoinput" ? t("Camera") : t("Microphone")) + " " + n;
        const option = Veche.el("option", "", label);
        option.value = device.deviceId;
        option.selected = device.deviceId === current;
        select.appendChild(option);
      }
      select.disabled = n === 0;
    }
  }

  function showCamera() {
    const video = $("preview");
    video.srcObject = state.camera ? new MediaStream([state.camera]) : null;
    if (state.camera) video.play().catch(() => {});
  }

  // The level meter: the microphone's loudness, read locally (the server reads RTP levels).
  let meter = null;
  function watchLevel() {
    if (meter) meter.context.close();
    meter = null;
    if (!state.mic || !window.AudioContext) return;
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 512;
    context.createMediaStreamSource(new MediaStream([state.mic])).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    meter = { context, analyser };
    const bar = $("level");
    function draw() {
      if (!meter || meter.analyser !== analyser) return;
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      const db = 20 * Math.log10(rms || 1e-6); // -60 dB .. 0 dB onto 0 .. 100 %
      const level = state.muted ? 0 : Math.max(0, Math.min(100, (db + 60) * (100 / 60)));
      bar.style.width = level.toFixed(0) + "%";
      bar.parentElement.setAttribute("aria-valuenow", level.toFixed(0));
      requestAnimationFrame(draw);
    }
    draw();
  }

  async function choose(kind, deviceId) {
    if (kind === "video") prefs.camera = deviceId;
    else prefs.mic = deviceId;
    localStorage.setItem(prefsKey, JSON.stringify(prefs));
    const fresh = await capture(kind);
    if (!fresh) return;
    const old = kind === "video" ? state.camera : state.mic;
    if (old) old.stop();
    if (kind === "video") {
      state.camera = fresh;
      showCamera();
      if (state.publisher) await state.publisher.set("camera", fresh).catch(failed);
    } else {
      state.mic = fresh;
      watchLevel();
      if (state.publisher && !state.muted) await state.publisher.set("microphone", fresh).catch(failed);
    }
    render();
  }

  // sending

  function failed(error) {
    toast(t("Could not send your media:") + " " + (error.message || error.code || error));
  }

  function tellState() {
    const on = state.sending && state.publisher !== null;
    socket.emit("state", { mic: on && Boolean(state.mic) && !state.muted, camera: on && Boolean(state.camera) }, () => {});
  }

  async function startSending() {
    if (state.publisher) state.publisher.close();
    const publisher = new VecheMedia.Publisher(socket, state.iceServers, { codec, onBroken: rebuild });
    state.publisher = publisher;
    const sources = [];
    if (state.mic) sources.push({ source: "microphone", kind: "audio", track: state.muted ? null : state.mic });
    if (state.camera) sources.push({ source: "camera", kind: "video", track: state.camera });
    try {
      await publisher.start(sources);
    } catch (error) {
      failed(error);
      publisher.close();
      if (state.publisher === publisher) state.publisher = null;
      state.sending = false;
    }
    tellState();
    render();
  }

  async function stopSending() {
    if (state.publisher) state.publisher.close();
    state.publisher = null;
    tellState();
    await VecheMedia.call(socket, "unpublish", {});
    render();
  }

  $("send-toggle").addEventListener("click", async () => {
    if (meter && meter.context.state === "suspended") meter.context.resume();
    state.sending = !state.sending;
    render();
    if (state.sending) await startSending();
    else await stopSending();
  });

  $("mute-toggle").addEventListener("click", async () => {
    state.muted = !state.muted;
    render();
    if (state.publisher) await state.publisher.set("microphone", state.muted ? null : state.mic).catch(failed);
    tellState();
  });

  $("camera-select").addEventListener("change", (event) => choose("video", event.target.value));
  $("mic-select").addEventListener("change", (event) => choose("audio", event.target.value));

  // A broken publish connection: take the seat back over a new socket, which sends again.
  function rebuild() {
    if (state.finished) return;
    if (state.publisher) state.publisher.close();
    state.publisher = null;
    socket.disconnect();
    socket.connect();
  }

  // signaling

  function join(retried) {
    const payload = { token: config.token };
    const seat = sessionStorage.getItem(seatKey);
    if (seat && !retried) payload.seat = seat;
    socket.emit("join", payload, (ack) => {
      if (ack && ack.error) {
        if (payload.seat) {
          sessionStorage.removeItem(seatKey);
          join(true);
          return;
        }
        $("hall-status").textContent = ack.error.message;
      } else if (ack && ack.status === "lobby") {
        state.lobby = ack.position;
        render();
      }
    });
  }

  function finish(message) {
    state.finished = true;
    state.joined = false;
    state.sending = false;
    if (state.publisher) state.publisher.close();
    state.publisher = null;
    sessionStorage.removeItem(seatKey);
    $("hall-status").textContent = message;
    render();
  }

  socket.on("connect", () => {
    setConnection(t("Connected"));
    join(false);
  });
  socket.on("disconnect", () => {
    state.joined = false;
    setConnection(t("Reconnecting…"));
    render();
  });
  socket.on("joined", async (snapshot) => {
    sessionStorage.setItem(seatKey, snapshot.seat);
    state.iceServers = snapshot.ice_servers || [];
    state.joined = true;
    state.lobby = null;
    // After a reconnect the server has closed the old connections: send again if we were.
    if (state.sending) await startSending();
    render();
  });
  socket.on("lobby", (data) => {
    state.lobby = data.position;
    render();
  });
  socket.on("muted", () => {
    state.muted = true;
    if (state.publisher) state.publisher.set("microphone", null).catch(() => {});
    toast(t("A moderator muted the hall's microphone."));
    render();
  });
  socket.on("denied", (data) => finish(data.message));
  socket.on("removed", (data) => finish(data.message));
  socket.on("ended", (data) => finish(data.message));
  socket.on("replaced", (data) => finish(data.message));
  socket.on("error", () => {});

  async function start() {
    render();
    if (navigator.mediaDevices) {
      state.camera = await capture("video");
      state.mic = await capture("audio");
      showCamera();
      watchLevel();
      await fillDevices();
    }
    render();
    socket.connect();
  }
  start();
})();

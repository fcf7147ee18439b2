// The viewer page's HLS player (docs/broadcast.md): the meeting's programme through hls.js, a few
// seconds behind live, when this browser has no WebRTC, when the WebRTC connection fails, or when
// the viewer chooses it. Offered while the meeting is live: the server composes the stage for HLS
// players on demand (the first playlist request starts it and waits for its first segment). On a
// server with that switched off, offered only while the meeting is recorded and its playlist is
// there.
"use strict";

(() => {
  const { config, t, toast } = Veche;
  const room = window.VecheRoom;
  const $ = (id) => document.getElementById(id);
  const box = $("hls-stage");
  if (!room || !room.socket || !box) return; // room.js could not connect: nothing to play
  const { socket, state } = room;
  const video = $("hls-video");
  const webrtc = typeof RTCPeerConnection !== "undefined";
  const withHlsJs = typeof Hls !== "undefined" && Hls.isSupported();
  const native = !withHlsJs && Boolean(video.canPlayType("application/vnd.apple.mpegurl"));
  // The token rides in the URL (a player cannot send headers); the server writes it into the
  // playlist's segment URIs too, so hls.js and native players alike need nothing more.
  const playlist = "/hls/" + encodeURIComponent(config.meeting_id) + "/index.m3u8" +
    (config.token ? "?token=" + encodeURIComponent(config.token) : "");
  const PROBE_MS = 2000; // a new recording's first segment is 2 s away
  const FAILED_AFTER_MS = 10000; // WebRTC not connected this long while the stage has video
  const prefKey = "veche:hls:" + (config.token || config.meeting_id);

  let onDemand = false; // the server makes a programme for HLS players while the meeting is live
  let recording = false; // the meeting is recorded: its programme is (or will be) in HLS
  let available = false; // there is (or will be on request) a live programme
  let chosen = webrtc ? sessionStorage.getItem(prefKey) || "webrtc" : "hls";
  let player = null; // the Hls instance (or true for a native player)
  let probeTimer = 0;
  let stalledSince = 0;

  // --- what plays ---

  const playing = () => Boolean(player);
  const wanted = () => available && (chosen === "hls" || !webrtc) && (withHlsJs || native);

  // Over HLS the stage's WebRTC pictures are hidden (tiles.js then asks the server to pause
  // their video) and its sound muted, so that nothing plays twice.
  function hideWebRtc(hide) {
    for (const id of ["tiles", "screen", "broadcast"]) $(id).style.display = hide ? "none" : "";
    for (const node of $("sounds").querySelectorAll("audio")) node.muted = hide;
  }
  new MutationObserver(() => playing() && hideWebRtc(true)).observe($("sounds"), { childList: true });

  function start() {
    if (player) return;
    box.hidden = false;
    hideWebRtc(true);
    // The first request starts the programme on the server and waits for its first segment.
    $("hls-status").textContent = t("Starting the broadcast programme…");
    $("hls-status").hidden = false;
    video.addEventListener("playing", () => {
      if ($("hls-status").textContent === t("Starting the broadcast programme…")) {
        $("hls-status").textContent = "";
        $("hls-status").hidden = true;
      }
    }, { once: true });
    if (withHlsJs) {
      // 3 s behind hls.js's live edge, which is itself up to 2.2 s behind the programme (a
      // segment is listed once complete): 3.2-5.2 s in all, the "under 6 s", with a
      // second or more in hand when a segment comes late. Further behind, it catches up at
      // 1.1x; past 10 s it jumps. No worker: the pages' CSP allows scripts from 'self' only,
      // and one 640x360 stream is light to transmux on the page.
      const hls = new Hls({
        enableWorker: false,
        liveSyncDuration: 3,
        liveMaxLatencyDuration: 10,
        maxLiveSyncPlaybackRate: 1.1,
        backBufferLength: 30,
      });
      player = hls;
      window.VecheHls.hls = hls;
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal || player !== hls) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        } else {
          // The playlist or a segment could not be fetched (the server restarted, the
          // recording stopped): start again from a fresh playlist in a moment.
          stop();
          setTimeout(render, PROBE_MS);
        }
      });
      hls.loadSource(playlist);
      hls.attachMedia(video);
    } else {
      player = true;
      video.src = playlist;
    }
    video.play().catch(() => {
      // Autoplay with sound refused: the viewer starts it with the player's controls.
      $("hls-status").textContent = t("Press play to start the broadcast.");
      $("hls-status").hidden = false;
    });
  }

  function stop() {
    if (!player) return;
    if (player !== true) player.destroy();
    player = null;
    window.VecheHls.hls = null;
    video.removeAttribute("src");
    video.load();
    box.hidden = true;
    $("hls-status").textContent = "";
    $("hls-status").hidden = true;
    hideWebRtc(false);
  }

  function render() {
    if (wanted()) start();
    else stop();
    const choice = $("hls-switch");
    choice.hidden = !available || !(withHlsJs || native);
    $("mode-webrtc").disabled = !webrtc;
    $("mode-webrtc").setAttribute("aria-pressed", String(!playing()));
    $("mode-hls").setAttribute("aria-pressed", String(playing()));
  }

  function choose(mode) {
    chosen = mode;
    stalledSince = 0;
    if (webrtc) sessionStorage.setItem(prefKey, mode);
    render();
  }

  // --- is there a programme? ---

  async function probe() {
    clearTimeout(probeTimer);
    if (!recording || onDemand) return;
    let live = false;
    try {
      const response = await fetch(playlist, { cache: "no-store" });
      const text = response.ok ? await response.text() : "";
      // A recording that has just begun lists no segment yet: ask again in a moment.
      live = text.includes("#EXTINF") && !text.includes("#EXT-X-ENDLIST");
    } catch (error) {
      live = false; // the server is restarting: ask again
    }
    if (!recording) return;
    if (live !== available) {
      available = live;
      render();
    }
    if (!live) probeTimer = setTimeout(probe, PROBE_MS);
  }

  function onJoined(snapshot) {
    onDemand = Boolean(snapshot.hls);
    if (onDemand) {
      available = true;
      if (!webrtc) $("broadcast").querySelector("p").textContent =
        t("This browser cannot receive the live video: the broadcast plays here over HLS, a few seconds behind.");
      render();
    }
    onRecording(snapshot.recording);
  }

  function onRecording(data) {
    const on = Boolean(data && data.on);
    if (on === recording) return;
    recording = on;
    if (onDemand) return; // the programme does not depend on the recording
    if (on) {
      probe();
    } else {
      clearTimeout(probeTimer);
      available = false;
      render();
    }
  }

  // WebRTC that does not connect (UDP blocked, a proxy) while the stage has something to show:
  // the viewer is moved to HLS once, and told.
  function watchWebRtc() {
    if (!webrtc || chosen === "hls" || !available || !(state.stage.tracks || []).length) {
      stalledSince = 0;
      return;
    }
    const pc = state.subscriber && state.subscriber.pc;
    if (pc && pc.connectionState === "connected") {
      stalledSince = 0;
      return;
    }
    stalledSince = stalledSince || Date.now();
    if (Date.now() - stalledSince >= FAILED_AFTER_MS) {
      chosen = "hls"; // for this page only: WebRTC may work again next time
      window.VecheHls.fellBack = true;
      render();
      toast(t("The live connection does not work here: watching over HLS, a few seconds behind."));
    }
  }
  setInterval(watchWebRtc, 1000);

  // How far behind the programme's clock the picture is (#EXT-X-PROGRAM-DATE-TIME), in
  // seconds; null until hls.js plays. For the tests and the latency figure in docs/broadcast.md.
  window.VecheHls = {
    hls: null,
    stalls: 0, // times the picture waited for data once playing
    fellBack: false, // WebRTC did not connect: moved to HLS
    latency() {
      const hls = this.hls;
      const date = hls && hls.playingDate;
      return date ? (Date.now() - date.getTime()) / 1000 : null;
    },
  };

  if (!webrtc) {
    $("broadcast").querySelector("p").textContent =
      t("This browser cannot receive the live video. The broadcast plays here over HLS while the meeting is recorded.");
  }
  video.addEventListener("waiting", () => { if (video.currentTime > 0) window.VecheHls.stalls += 1; });
  $("mode-webrtc").addEventListener("click", () => choose("webrtc"));
  $("mode-hls").addEventListener("click", () => choose("hls"));
  socket.on("joined", onJoined);
  socket.on("recording", onRecording);
  render();
})();

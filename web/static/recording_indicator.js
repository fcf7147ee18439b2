// Recording in the room and viewer pages: the "REC" indicator while the meeting is recorded,
// the meeting's notice when recording starts (a banner one may close), a recording error, and
// for those allowed to record, the Start/Stop button (docs/protocol.md: recording_start,
// recording_stop, the `recording` event and the `joined` snapshot's "recording").
"use strict";

(() => {
  const { t, toast } = Veche;
  const room = window.VecheRoom;
  if (!room || !room.socket) return; // room.js could not connect: nothing to show
  const { socket, state } = room;
  const $ = (id) => document.getElementById(id);
  // The meetings' default notice is English in the database: show it in the page's language.
  const DEFAULT_NOTICE = "This meeting is being recorded.";
  const current = { on: false, id: null, notice: "", error: null };
  let busy = false;

  function noticeText(notice) {
    if (!notice || notice === DEFAULT_NOTICE) return t("This meeting is being recorded.");
    return notice;
  }

  function showBanner(text, isError) {
    const banner = $("recording-banner");
    $("recording-text").textContent = text;
    banner.className = "banner recording-banner" + (isError ? " banner-error" : "");
    banner.hidden = false;
  }

  function renderButton() {
    const button = $("record-toggle");
    const self = state.self;
    const allowed = Boolean(self && self.permissions && self.permissions.includes("record"));
    button.hidden = !allowed;
    button.disabled = busy;
    button.setAttribute("aria-pressed", String(current.on));
    button.querySelector("span").textContent = current.on ? t("Stop recording") : t("Start recording");
  }

  // `announce`: a change seen as it happens (the notice is shown); a snapshot on joining shows
  // the notice too when recording is already on, since this person has not seen it yet.
  function apply(recording, announce) {
    if (recording && !recording.on && "rendering" in recording) {
      showRender(recording);
      return;
    }
    const next = recording || { on: false, id: null, notice: "", error: null };
    const started = next.on && (!current.on || current.id !== next.id);
    const stopped = !next.on && current.on;
    Object.assign(current, { on: Boolean(next.on), id: next.id || null, notice: next.notice || "", error: next.error || null });
    $("rec-indicator").hidden = !current.on;
    if (current.error) {
      showBanner(t("Recording problem:") + " " + current.error, true);
    } else if (started && announce) {
      showBanner(noticeText(current.notice), false);
    } else if (stopped) {
      $("recording-banner").hidden = true;
      if (announce) toast(t("Recording stopped"));
    }
    renderButton();
  }

  // A recording just stopped whose live programme fell short is made again from its tracks
  // before it is ready: its progress, then the outcome (docs/recording.md).
  function showRender(recording) {
    if (typeof recording.rendering === "number") {
      showBanner(t("Preparing the recording from its tracks: {n} %").replace("{n}", String(recording.rendering)), false);
    } else if (recording.error) {
      showBanner(t("Recording problem:") + " " + recording.error, true);
    } else {
      $("recording-banner").hidden = true;
      toast(t("The recording is ready"));
    }
  }

  $("recording-dismiss").addEventListener("click", () => { $("recording-banner").hidden = true; });

  $("record-toggle").addEventListener("click", () => {
    if (busy) return;
    const event = current.on ? "recording_stop" : "recording_start";
    if (current.on && !confirm(t("Stop recording?"))) return;
    busy = true;
    renderButton();
    socket.emit(event, {}, (ack) => {
      busy = false;
      if (ack && ack.error) {
        toast(t("Recording:") + " " + ack.error.message);
      } else if (ack && ack.recording) {
        // The room's `recording` event follows; the ack makes the button right at once.
        const on = ack.recording.status === "recording";
        if (on !== current.on) apply({ on, id: ack.recording.id, notice: current.notice, error: null }, true);
      }
      renderButton();
    });
  });

  socket.on("joined", (snapshot) => apply(snapshot.recording, true));
  socket.on("you", () => renderButton());
  socket.on("recording", (data) => apply(data, true));
  renderButton();
})();

// What the room page (and a viewer given the floor) sends and how it connects its media: the
// camera, microphone and screen (capture, mute, device choice, screen share) and the two peer
// connections of media.js, built after each `joined` and rebuilt when one breaks.
"use strict";

const VecheLocal = (() => {
  const { config, t, toast } = Veche;

  // `room`: state (the room page's), prefs and savePrefs(), can(permission), render(),
  // setConnection(kind), socket() and the codec to prefer.
  function create(room) {
    const { state, prefs, can, render } = room;
    const codec = room.codec;
    const ackErrors = (ack) => ack && ack.error && toast(ack.error.message);

    async function startMedia() {
      if (config.watch || !navigator.mediaDevices) return;
      const wantVideo = prefs.camera !== false;
      const wantAudio = prefs.mic !== false;
      if (!wantVideo && !wantAudio) return;
      try {
        const stream = await navigator.mediaDevices.getUserMedia({
          video: wantVideo ? VecheDevices.constraint("video", prefs.cameraId) : false,
          audio: wantAudio ? VecheDevices.constraint("audio", prefs.micId) : false,
        });
        state.local.audio = stream.getAudioTracks()[0] || null;
        state.local.video = stream.getVideoTracks()[0] || null;
      } catch (error) {
        toast(t("Camera or microphone is not available.") + " " + t("You can still join and listen."));
      }
      state.on.mic = Boolean(state.local.audio);
      state.on.camera = Boolean(state.local.video);
    }

    function stopMedia() {
      closeConnections();
      for (const track of [state.local.audio, state.local.video]) if (track) track.stop();
      if (state.local.screen) for (const track of state.local.screen.getTracks()) track.stop();
      state.local = { audio: null, video: null, screen: null };
      state.on = { mic: false, camera: false, screen: false };
    }

    function mediaError(error) {
      const messages = {
        forbidden: t("Your role does not allow you to publish this."),
        timeout: t("The server did not answer. Try again."),
        screen_busy: t("Someone else is sharing the screen. Ask them to stop first."),
      };
      toast(messages[error.code] || (error.message ? t("Could not send your media:") + " " + error.message : t("Could not send your media.")));
    }

    // Mute and unmute swap the sender's track (null sends nothing), so a muted microphone sends
    // no packets at all; a stopped camera also turns its light off.
    async function setMic(on) {
      if (on && !state.local.audio) {
        try {
          state.local.audio = await VecheDevices.capture("audio", prefs.micId);
        } catch (error) {
          toast(t("Camera or microphone is not available."));
          return;
        }
      }
      if (state.local.audio) state.local.audio.enabled = on;
      state.on.mic = on && Boolean(state.local.audio);
      render();
      sendState();
      if (state.publisher) await state.publisher.set("microphone", state.on.mic ? state.local.audio : null).catch(mediaError);
    }

    async function setCamera(on) {
      if (on && !state.local.video) {
        try {
          state.local.video = await VecheDevices.capture("video", prefs.cameraId);
        } catch (error) {
          toast(t("Camera or microphone is not available."));
          return;
        }
      }
      if (!on && state.local.video) {
        state.local.video.stop();
        state.local.video = null;
      }
      state.on.camera = on && Boolean(state.local.video);
      render();
      sendState();
      if (state.publisher) await state.publisher.set("camera", state.local.video).catch(mediaError);
    }

    async function startScreen() {
      let stream;
      try {
        stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      } catch (error) {
        if (error.name !== "NotAllowedError") toast(t("The screen cannot be shared."));
        return;
      }
      const track = stream.getVideoTracks()[0];
      track.addEventListener("ended", stopScreen); // "Stop sharing" in the browser's own bar
      state.local.screen = stream;
      state.on.screen = true;
      render();
      try {
        if (state.publisher) await state.publisher.set("screen", track);
        sendState();
      } catch (error) {
        mediaError(error);
        stopScreen();
      }
    }

    async function stopScreen() {
      if (!state.local.screen) return;
      for (const track of state.local.screen.getTracks()) track.stop();
      state.local.screen = null;
      state.on.screen = false;
      render();
      sendState();
      if (state.publisher) await state.publisher.remove("screen").catch(mediaError);
    }

    async function switchDevice(kind, deviceId) {
      if (kind === "audio") prefs.micId = deviceId;
      else prefs.cameraId = deviceId;
      room.savePrefs();
      const current = kind === "audio" ? state.local.audio : state.local.video;
      if (!current) return;
      let fresh;
      try {
        fresh = await VecheDevices.capture(kind, deviceId);
      } catch (error) {
        toast(t("Camera or microphone is not available."));
        return;
      }
      current.stop();
      if (kind === "audio") {
        fresh.enabled = state.on.mic;
        state.local.audio = fresh;
        if (state.publisher && state.on.mic) await state.publisher.set("microphone", fresh).catch(mediaError);
      } else {
        state.local.video = fresh;
        if (state.publisher) await state.publisher.set("camera", fresh).catch(mediaError);
      }
      render();
    }

    function sendState() {
      if (!state.self) return;
      const payload = {};
      if (can("publish_audio")) payload.mic = state.on.mic;
      if (can("publish_video")) payload.camera = state.on.camera;
      if (can("publish_screen")) payload.screen = state.on.screen;
      if (Object.keys(payload).length) room.socket().emit("state", payload, ackErrors);
    }

    // the two peer connections

    function closeConnections() {
      if (state.publisher) state.publisher.close();
      if (state.subscriber) state.subscriber.close();
      state.publisher = state.subscriber = null;
      state.media = new Map();
    }

    // After `joined` (the first time or after a reconnect, when the server has dropped the old
    // connections): a fresh publish offer with what is on; the server sends subscribe_offers.
    // A viewer has no publish connection until given the floor.
    async function connectMedia() {
      closeConnections();
      state.subscriber = newSubscriber();
      await startPublisher();
    }

    async function startPublisher() {
      if (!can("publish_audio") && !can("publish_video") && !can("publish_screen")) return;
      const sources = [];
      if (can("publish_audio") && state.local.audio) {
        sources.push({ source: "microphone", kind: "audio", track: state.on.mic ? state.local.audio : null });
      }
      if (can("publish_video") && state.local.video) sources.push({ source: "camera", kind: "video", track: state.local.video });
      if (can("publish_screen") && state.local.screen) {
        sources.push({ source: "screen", kind: "video", track: state.local.screen.getVideoTracks()[0] });
      }
      const publisher = new VecheMedia.Publisher(room.socket(), state.iceServers, { codec, onBroken: rebuild });
      state.publisher = publisher;
      await publisher.start(sources).catch(mediaError);
    }

    // A new role may publish more or less: what it may not is stopped, and the rest goes out
    // on a new publish connection (the server closed or keeps the old one; unpublish is sure).
    // A viewer given the floor gets an empty one: the camera and microphone start on a click.
    async function republish() {
      if (state.publisher) state.publisher.close();
      state.publisher = null;
      if (!can("publish_audio") && state.local.audio) {
        state.local.audio.stop();
        state.local.audio = null;
        state.on.mic = false;
      }
      if (!can("publish_video") && state.local.video) {
        state.local.video.stop();
        state.local.video = null;
        state.on.camera = false;
      }
      if (!can("publish_screen") && state.local.screen) {
        for (const track of state.local.screen.getTracks()) track.stop();
        state.local.screen = null;
        state.on.screen = false;
      }
      render();
      await VecheMedia.call(room.socket(), "unpublish", {});
      await startPublisher();
    }

    function newSubscriber() {
      return new VecheMedia.Subscriber(room.socket(), state.iceServers, {
        onBroken: rebuild,
        onChange: (received) => {
          state.media = received;
          render();
        },
      });
    }

    // A peer connection that failed (or stayed disconnected): take the seat back over a new
    // socket connection, which builds both peer connections again.
    function rebuild() {
      if (state.finished || state.rebuilding) return;
      state.rebuilding = true;
      closeConnections();
      room.setConnection("reconnecting");
      room.socket().disconnect();
      room.socket().connect();
    }

    return {
      startMedia, stopMedia, mediaError, setMic, setCamera, startScreen, stopScreen, switchDevice,
      sendState, closeConnections, connectMedia, newSubscriber, rebuild, republish,
    };
  }

  return { create };
})();

// The two WebRTC connections of docs/protocol.md ("Media"): the publish connection (we offer,
// the server answers) and the subscribe connection (the server offers, we answer).
"use strict";

const VecheMedia = (() => {
  // A connection that stays "disconnected" this long is rebuilt; "failed" is rebuilt at once.
  const DISCONNECTED_GRACE_MS = 4000;

  // socket.io's emit with an ack, as a promise; a lost ack becomes an error like the server's.
  function call(socket, event, payload) {
    return new Promise((resolve) => {
      socket.timeout(10000).emit(event, payload, (err, ack) => {
        if (err) resolve({ error: { code: "timeout", message: "no answer from the server" } });
        else resolve(ack || { ok: true });
      });
    });
  }

  class MediaError extends Error {
    constructor(error) {
      super(error.message || error.code);
      this.code = error.code;
    }
  }

  // VP8 first (every browser decodes it); H.264 constrained baseline, packetization-mode 1,
  // next, or first when asked for (?codec=H264). Codecs the SFU does not forward (VP9, AV1)
  // are left out; retransmission and redundancy entries stay.
  function preferCodec(transceiver, wanted) {
    if (!RTCRtpSender.getCapabilities || !transceiver.setCodecPreferences) return;
    const codecs = RTCRtpSender.getCapabilities("video").codecs;
    const h264 = (c) => c.mimeType === "video/H264" &&
      /packetization-mode=1/.test(c.sdpFmtpLine || "") && /profile-level-id=42e0/.test(c.sdpFmtpLine || "");
    const vp8 = (c) => c.mimeType === "video/VP8";
    const order = wanted === "H264" ? [h264, vp8] : [vp8, h264];
    const first = order.flatMap((test) => codecs.filter(test));
    const rest = codecs.filter((c) => !first.includes(c) && /rtx|red|ulpfec/i.test(c.mimeType));
    try {
      transceiver.setCodecPreferences([...first, ...rest]);
    } catch (e) {
      // An old browser without these codecs keeps its own order.
    }
  }

  // Enough for a sharp 720p camera and a readable screen; a meeting of many stays light.
  const MAX_BITRATE = { camera: 900000, screen: 1500000 };

  function sending(source) {
    const init = { direction: "sendonly" };
    if (MAX_BITRATE[source]) init.sendEncodings = [{ maxBitrate: MAX_BITRATE[source] }];
    return init;
  }

  // A section taken over by another source gets that source's bitrate.
  function setBitrate(sender, source) {
    const parameters = sender.getParameters();
    if (!parameters.encodings || !parameters.encodings.length) return;
    for (const encoding of parameters.encodings) {
      if (MAX_BITRATE[source]) encoding.maxBitrate = MAX_BITRATE[source];
      else delete encoding.maxBitrate;
    }
    sender.setParameters(parameters).catch(() => {}); // the browser's own limit stays
  }

  // Shared by both connections: trickled candidates wait until the server has this
  // connection's offer or answer, and a broken link is reported once.
  class Link {
    constructor(socket, kind, iceServers, onBroken) {
      this.socket = socket;
      this.kind = kind;
      this.onBroken = onBroken;
      this.pending = [];
      this.ready = false;
      this.closed = false;
      this.timer = 0;
      this.iceServers = iceServers || [];
      this.open();
    }

    open() {
      const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
      this.pc = pc;
      pc.addEventListener("icecandidate", (event) => {
        const c = event.candidate;
        const message = c && c.candidate
          ? { pc: this.kind, candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex }
          : { pc: this.kind, candidate: "" };
        if (pc !== this.pc) return; // a connection replaced since
        if (this.ready) this.sendCandidate(message);
        else this.pending.push(message);
      });
      pc.addEventListener("connectionstatechange", () => pc === this.pc && this.watch());
    }

    sendCandidate(message) {
      if (!this.closed) this.socket.emit("ice", message, () => {});
    }

    flush() {
      this.ready = true;
      for (const message of this.pending.splice(0)) this.sendCandidate(message);
    }

    watch() {
      const s = this.pc.connectionState;
      clearTimeout(this.timer);
      if (this.closed) return;
      if (s === "failed") this.broken();
      else if (s === "disconnected") this.timer = setTimeout(() => this.broken(), DISCONNECTED_GRACE_MS);
    }

    broken() {
      if (this.closed) return;
      this.close();
      this.onBroken(this.kind);
    }

    close() {
      this.closed = true;
      clearTimeout(this.timer);
      this.pc.close();
    }
  }

  // Our camera, microphone and screen: one sending section per source, labelled by mid.
  // A source that ends (a screen share stopped) leaves its section inactive, not stopped: the
  // next source of its kind takes it over, so m-lines never pile up and no offer carries a
  // rejected section (docs/media.md, "Renegotiation").
  class Publisher extends Link {
    constructor(socket, iceServers, options) {
      super(socket, "publish", iceServers, options.onBroken);
      this.codec = options.codec;
      this.sections = new Map(); // source -> transceiver
      this.spare = []; // inactive transceivers a later source may take over
      this.queue = Promise.resolve();
    }

    has(source) {
      return this.sections.has(source);
    }

    // The first offer with every source at once: [{source, track}] (a null track sends
    // nothing until set() gives it one, e.g. a microphone that starts muted).
    start(sources) {
      return this.serial(async () => {
        for (const { source, track, kind } of sources) {
          const added = this.pc.addTransceiver(track || kind, sending(source));
          if (kind === "video") preferCodec(added, this.codec);
          this.sections.set(source, added);
        }
        if (this.sections.size) {
          await this.negotiate(() => {
            for (const transceiver of this.sections.values()) transceiver.stop();
            this.sections.clear();
          });
        }
      });
    }

    // Start or stop sending `track` as `source`. A new source renegotiates (on a spare section
    // of its kind if there is one); muting and unmuting an existing one only swaps the
    // sender's track (null sends nothing at all).
    set(source, track) {
      return this.serial(async () => {
        const transceiver = this.sections.get(source);
        if (transceiver) {
          await transceiver.sender.replaceTrack(track);
          return;
        }
        if (!track) return;
        const spare = this.spare.findIndex((t) => t.receiver.track.kind === track.kind);
        let taken;
        if (spare >= 0) {
          taken = this.spare.splice(spare, 1)[0];
          await taken.sender.replaceTrack(track);
          taken.direction = "sendonly";
          setBitrate(taken.sender, source);
        } else {
          taken = this.pc.addTransceiver(track, sending(source));
          if (track.kind === "video") preferCodec(taken, this.codec);
        }
        this.sections.set(source, taken);
        await this.negotiate(() => this.retire(source, taken));
      });
    }

    // Remove a source (a screen share that ends): its section goes inactive (the server drops
    // the track) and waits for the next source of its kind.
    remove(source) {
      return this.serial(async () => {
        const transceiver = this.sections.get(source);
        if (!transceiver) return;
        await this.retire(source, transceiver);
        // Refused, the section is inactive here all the same and the next offer says so.
        await this.negotiate(() => {});
      });
    }

    async retire(source, transceiver) {
      if (this.sections.get(source) === transceiver) this.sections.delete(source);
      await transceiver.sender.replaceTrack(null);
      transceiver.direction = "inactive";
      if (!this.spare.includes(transceiver)) this.spare.push(transceiver);
    }

    serial(step) {
      const next = this.queue.then(step);
      this.queue = next.catch(() => {});
      return next;
    }

    // Offer, send, apply the answer; an error from the server rolls the offer back, undoes
    // the change (`undo`) and is thrown: the sections that ran before go on as they were.
    async negotiate(undo) {
      if (this.closed) return;
      await this.pc.setLocalDescription(await this.pc.createOffer());
      const sources = {};
      for (const [source, transceiver] of this.sections) sources[transceiver.mid] = source;
      const ack = await call(this.socket, "publish", { sdp: this.pc.localDescription.sdp, sources });
      if (this.closed) return;
      if (ack.error) {
        await this.pc.setLocalDescription({ type: "rollback" });
        await undo();
        throw new MediaError(ack.error);
      }
      await this.pc.setRemoteDescription({ type: "answer", sdp: ack.sdp });
      this.flush();
    }
  }

  // What the others publish: the server offers, re-offers as tracks come and go; each offer
  // maps its mids to Tracks.
  class Subscriber extends Link {
    constructor(socket, iceServers, options) {
      super(socket, "subscribe", iceServers, options.onBroken);
      this.onChange = options.onChange;
      this.queue = Promise.resolve();
      this.received = new Map(); // track id -> MediaStreamTrack
    }

    offer(data) {
      const next = this.queue.then(() => this.answer(data));
      this.queue = next.catch(() => {});
      return next;
    }

    // An offer we cannot apply is rolled back and left unanswered: the server gives it up and
    // offers again (docs/protocol.md). An answer to an offer the server has since replaced is
    // refused as stale: the newer offer, queued behind this one, is answered next.
    async answer(data) {
      if (this.closed) return;
      // The server's side of our connection ended and it made a new one: so do we.
      if (data.fresh && this.pc.remoteDescription) this.renew();
      try {
        await this.pc.setRemoteDescription({ type: "offer", sdp: data.sdp });
        await this.pc.setLocalDescription(await this.pc.createAnswer());
      } catch (error) {
        if (this.pc.signalingState === "have-remote-offer") {
          await this.pc.setRemoteDescription({ type: "rollback" }).catch(() => {});
        }
        throw error;
      }
      const tracks = data.tracks || {};
      const received = new Map();
      for (const transceiver of this.pc.getTransceivers()) {
        const info = transceiver.mid !== null && tracks[transceiver.mid];
        if (info && !transceiver.stopped) received.set(info.id, transceiver.receiver.track);
      }
      this.received = received;
      this.onChange(received);
      const answer = { sdp: this.pc.localDescription.sdp, version: data.version };
      const ack = await call(this.socket, "subscribe_answer", answer);
      if (ack.error && ack.error.code === "stale_answer") return;
      // Refused, the server offers again at once: say so, the next offer mends it.
      if (ack.error) throw new MediaError(ack.error);
      this.flush();
    }

    renew() {
      clearTimeout(this.timer);
      this.pc.close();
      this.pending = [];
      this.ready = false;
      this.open();
    }
  }

  return { Publisher, Subscriber, MediaError, call };
})();

// The stage of the room and viewer pages: a tile per person with their camera, name, speaking
// ring and markers; a screen share shown large with the tiles in a strip; one <audio> per person.
"use strict";

const VecheTiles = (() => {
  const { t, el } = Veche;

  // Attach a MediaStreamTrack (or a whole MediaStream) to a <video>/<audio> only when it
  // changes: setting srcObject again restarts playback and flickers.
  function attach(element, source) {
    if (element.vecheSource === source) return;
    element.vecheSource = source;
    element.srcObject = !source ? null : source instanceof MediaStream ? source : new MediaStream([source]);
  }

  function mediaElement(tag) {
    const node = el(tag);
    node.autoplay = true;
    node.playsInline = true;
    if (tag === "video") node.muted = true; // sound comes from the <audio> elements
    return node;
  }

  function initials(name) {
    return name.split(/\s+/).map((w) => w[0] || "").join("").slice(0, 2).toUpperCase();
  }

  function create(options) {
    const stage = options.stage;
    const tiles = options.tiles;
    const screen = options.screen;
    const sounds = options.sounds;
    const soundNotice = options.soundNotice;
    const shown = new Map(); // remote camera track id -> whether we asked for it (true by default)
    let blocked = false;

    const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const track = entry.target.dataset.track;
        if (!track) continue;
        const visible = entry.isIntersecting;
        if ((shown.get(track) !== false) !== visible) {
          shown.set(track, visible);
          options.onVisible(track, visible);
        }
      }
    }, { root: null, threshold: 0 }) : null;

    function play(element) {
      const started = element.play();
      if (started && started.catch) {
        started.catch((error) => {
          if (error.name !== "NotAllowedError") return;
          blocked = true;
          if (soundNotice) soundNotice.hidden = false;
        });
      }
    }

    function unlock() {
      blocked = false;
      if (soundNotice) soundNotice.hidden = true;
      for (const node of sounds.querySelectorAll("audio")) play(node);
    }
    if (soundNotice) soundNotice.addEventListener("click", unlock);

    // Keep existing children where they are: moving a playing <video> can make it stall.
    function arrange(parent, wanted) {
      wanted.forEach((node, i) => {
        if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
      });
      while (parent.children.length > wanted.length) {
        const node = parent.lastElementChild;
        if (observer) observer.unobserve(node);
        node.remove();
      }
    }

    function tileFor(person, keep) {
      let tile = keep.get(person.id);
      if (!tile) {
        tile = el("div", "tile");
        tile.dataset.id = person.id;
        const video = mediaElement("video");
        video.hidden = true;
        tile.append(video, el("div", "tile-initials"), el("div", "tile-note"), el("div", "tile-label"), el("div", "tile-actions"));
      }
      return tile;
    }

    function updateTile(tile, person, view) {
      const isSelf = person.id === view.selfId;
      const video = tile.querySelector("video");
      let source = null;
      let track = "";
      if (isSelf) {
        source = view.local.camera;
      } else if (person.camera && !view.audioOnly) {
        const info = view.tracksOf(person.id, "camera");
        if (info && view.media.get(info.id)) {
          source = view.media.get(info.id);
          track = info.id;
        }
      }
      attach(video, source);
      video.hidden = !source;
      video.classList.toggle("mirror", isSelf);
      if (source) video.play().catch(() => {});
      if (tile.dataset.track !== track) {
        // A new track is in view until the observer says otherwise.
        if (observer) observer.unobserve(tile);
        if (track) tile.dataset.track = track;
        else delete tile.dataset.track;
        if (observer && track) observer.observe(tile);
      }
      tile.querySelector(".tile-initials").textContent = initials(person.name);
      const note = tile.querySelector(".tile-note");
      const paused = track && view.paused.has(track);
      note.textContent = paused ? t("Video paused: slow connection") : "";
      note.hidden = !paused;
      const label = tile.querySelector(".tile-label");
      const name = el("span", "tile-name", person.name + (isSelf ? " (" + t("you") + ")" : ""));
      label.replaceChildren(name, ...options.icons(person));
      tile.querySelector(".tile-actions").replaceChildren(...(isSelf ? [] : options.actions(person)));
      tile.classList.toggle("hand", Boolean(person.hand));
      tile.classList.toggle("away", !person.connected);
      tile.classList.toggle("speaking", view.speaking.has(person.id));
      tile.classList.toggle("active", view.active === person.id && view.speaking.has(person.id));
      tile.classList.toggle("has-video", Boolean(source));
    }

    function updateScreen(view) {
      // A screen share from someone else, else our own (shown so the sharer sees what goes out).
      let shared = null;
      for (const person of view.people) {
        if (person.id === view.selfId) continue;
        const info = view.tracksOf(person.id, "screen");
        if (info && view.media.get(info.id)) shared = { person, source: view.media.get(info.id) };
      }
      if (!shared && view.local.screen) {
        const self = view.people.find((p) => p.id === view.selfId);
        if (self) shared = { person: self, source: view.local.screen, own: true };
      }
      stage.classList.toggle("sharing", Boolean(shared));
      screen.hidden = !shared;
      let video = screen.querySelector("video");
      if (!shared) {
        if (video) attach(video, null);
        return;
      }
      if (!video) {
        video = mediaElement("video");
        screen.append(video, el("div", "screen-label"));
      }
      attach(video, shared.source);
      video.play().catch(() => {});
      screen.dataset.id = shared.person.id;
      screen.querySelector(".screen-label").textContent = shared.own
        ? t("You are sharing your screen")
        : t("{name} is sharing the screen").replace("{name}", shared.person.name);
    }

    function updateSounds(view) {
      const keep = new Map([...sounds.children].map((node) => [node.dataset.id, node]));
      const wanted = [];
      for (const person of view.people) {
        if (person.id === view.selfId) continue;
        const media = view.tracks
          .filter((info) => info.participant === person.id && info.kind === "audio" && view.media.get(info.id))
          .map((info) => view.media.get(info.id));
        if (!media.length) continue;
        let node = keep.get(person.id);
        if (!node) {
          node = mediaElement("audio");
          node.dataset.id = person.id;
        }
        const key = media.map((m) => m.id).join(",");
        if (node.dataset.key !== key) {
          node.dataset.key = key;
          attach(node, new MediaStream(media));
          if (!blocked) play(node);
        }
        wanted.push(node);
      }
      arrange(sounds, wanted);
    }

    // `view`: people (sorted), selfId, local {camera, screen} streams, tracks [Track],
    // media Map(track id -> MediaStreamTrack), speaking Set, active id, paused Set, audioOnly.
    function update(view) {
      view.tracksOf = (id, source) => view.tracks.find((info) => info.participant === id && info.source === source);
      const keep = new Map([...tiles.children].map((tile) => [tile.dataset.id, tile]));
      const wanted = [];
      for (const person of view.people) {
        if (person.role === "viewer") continue;
        const tile = tileFor(person, keep);
        wanted.push(tile);
        updateTile(tile, person, view);
      }
      arrange(tiles, wanted);
      tiles.dataset.count = String(Math.min(wanted.length, 9));
      updateScreen(view);
      updateSounds(view);
    }

    return { update, unlock };
  }

  return { create };
})();

// The join page: name, camera preview, microphone level and device choice before entering.
"use strict";

(() => {
  const { config, t } = Veche;
  const video = document.getElementById("preview");
  const noCamera = document.getElementById("no-camera");
  const level = document.getElementById("meter-level");
  const cameraSelect = document.getElementById("camera-select");
  const micSelect = document.getElementById("mic-select");
  const cameraOn = document.getElementById("camera-on");
  const micOn = document.getElementById("mic-on");
  const deviceError = document.getElementById("device-error");
  const form = document.getElementById("join-form");
  const nameInput = document.getElementById("name");
  const prefsKey = "veche:prefs:" + config.token;

  let stream = null;
  let audio = null; // {context, analyser, frame}
  // Each start() counts up: a capture that resolves after a newer start() (a box ticked off while
  // the camera was opening) is stopped at once, so no camera or meter is left running unseen.
  let generation = 0;

  function stop() {
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    if (audio) {
      cancelAnimationFrame(audio.frame);
      audio.context.close();
      audio = null;
    }
    level.style.width = "0%";
  }

  function showDeviceError(error) {
    const messages = {
      NotAllowedError: t("The browser was not allowed to use the camera or microphone."),
      NotFoundError: t("No camera or microphone was found."),
      NotReadableError: t("The camera or microphone is busy in another program."),
    };
    deviceError.textContent = (messages[error.name] || t("Camera or microphone is not available.")) +
      " " + t("You can still join and listen.");
    deviceError.hidden = false;
  }

  function meter(source) {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 512;
    context.createMediaStreamSource(source).connect(analyser);
    const samples = new Uint8Array(analyser.fftSize);
    const mine = { context, analyser, frame: 0 };
    audio = mine;
    const draw = () => {
      analyser.getByteTimeDomainData(samples);
      let peak = 0;
      for (const s of samples) peak = Math.max(peak, Math.abs(s - 128));
      level.style.width = Math.min(100, Math.round((peak / 128) * 160)) + "%";
      mine.frame = requestAnimationFrame(draw);
    };
    draw();
  }

  function fill(select, devices, kind, chosen) {
    const keep = chosen || select.value;
    select.replaceChildren();
    let n = 0;
    for (const device of devices) {
      if (device.kind !== kind) continue;
      n += 1;
      const option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || (kind === "videoinput" ? t("Camera") : t("Microphone")) + " " + n;
      select.appendChild(option);
    }
    if (keep && [...select.options].some((o) => o.value === keep)) select.value = keep;
    select.disabled = n === 0;
  }

  async function start() {
    const current = ++generation;
    stop();
    deviceError.hidden = true;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showDeviceError({ name: "NotFoundError" });
      return;
    }
    const wantVideo = cameraOn.checked;
    const wantAudio = micOn.checked;
    video.hidden = !wantVideo;
    noCamera.hidden = wantVideo;
    if (!wantVideo && !wantAudio) return;
    const constraints = {
      video: wantVideo ? (cameraSelect.value ? { deviceId: { exact: cameraSelect.value } } : true) : false,
      audio: wantAudio ? (micSelect.value ? { deviceId: { exact: micSelect.value } } : true) : false,
    };
    let captured;
    try {
      captured = await navigator.mediaDevices.getUserMedia(constraints);
    } catch (error) {
      if (current === generation) showDeviceError(error);
      return;
    }
    if (current !== generation) {
      for (const track of captured.getTracks()) track.stop();
      return;
    }
    stream = captured;
    video.srcObject = wantVideo ? stream : null;
    if (wantAudio) meter(stream);
    // Labels are only known once permission is granted, so list devices after getUserMedia.
    const devices = await navigator.mediaDevices.enumerateDevices();
    const used = (kind) => {
      const track = stream && stream.getTracks().find((tr) => tr.kind === kind);
      return track ? track.getSettings().deviceId : "";
    };
    fill(cameraSelect, devices, "videoinput", used("video"));
    fill(micSelect, devices, "audioinput", used("audio"));
  }

  for (const control of [cameraSelect, micSelect, cameraOn, micOn]) {
    control.addEventListener("change", start);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!name) {
      nameInput.focus();
      return;
    }
    sessionStorage.setItem(prefsKey, JSON.stringify({
      name,
      camera: cameraOn.checked,
      mic: micOn.checked,
      cameraId: cameraSelect.value,
      micId: micSelect.value,
    }));
    stop();
    location.href = config.room_url;
  });

  window.addEventListener("pagehide", stop);
  start();
})();

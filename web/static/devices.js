// The room page's cameras and microphones: capturing one by its id, and the device menu.
"use strict";

const VecheDevices = (() => {
  const { t, el } = Veche;

  function constraint(kind, deviceId) {
    // `ideal`, not `exact`: a device unplugged since the join page falls back to another.
    const base = kind === "video" ? { width: { ideal: 1280 }, height: { ideal: 720 } } : {};
    return deviceId ? { ...base, deviceId: { ideal: deviceId } } : kind === "video" ? base : true;
  }

  async function capture(kind, deviceId) {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraint(kind, deviceId) });
    return stream.getTracks()[0];
  }

  function fill(select, devices, kind, current) {
    select.replaceChildren();
    let n = 0;
    for (const device of devices) {
      if (device.kind !== kind) continue;
      n += 1;
      const label = device.label || (kind === "videoinput" ? t("Camera") : t("Microphone")) + " " + n;
      const option = el("option", "", label);
      option.value = device.deviceId;
      option.selected = device.deviceId === current;
      select.appendChild(option);
    }
    select.disabled = n === 0;
  }

  // A button that opens a small menu of cameras and microphones; a choice calls
  // onChoose(kind, deviceId) with kind "video" or "audio".
  function menu(button, panel, local, onChoose) {
    const cameras = panel.querySelector("select[data-kind=video]");
    const mics = panel.querySelector("select[data-kind=audio]");
    const used = (track) => (track ? track.getSettings().deviceId : "");
    async function open() {
      const devices = await navigator.mediaDevices.enumerateDevices();
      fill(cameras, devices, "videoinput", used(local().video));
      fill(mics, devices, "audioinput", used(local().audio));
      panel.hidden = false;
      button.setAttribute("aria-expanded", "true");
    }
    function close() {
      panel.hidden = true;
      button.setAttribute("aria-expanded", "false");
    }
    button.addEventListener("click", () => (panel.hidden ? open() : close()));
    for (const select of [cameras, mics]) {
      select.addEventListener("change", () => onChoose(select.dataset.kind, select.value));
    }
    document.addEventListener("keydown", (event) => event.key === "Escape" && close());
    document.addEventListener("click", (event) => {
      if (!panel.hidden && !panel.contains(event.target) && !button.contains(event.target)) close();
    });
  }

  return { constraint, capture, menu };
})();

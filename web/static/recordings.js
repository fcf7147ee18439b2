// The recordings lists: keep, delete, render again, and the status of unfinished recordings
// asked again every few seconds until each is ready or failed.
"use strict";

(() => {
  const { config, t, api, el, formatTimes } = Veche;
  const token = config.token || null;
  const rows = document.getElementById("recording-rows");
  if (!rows) return;
  const UNFINISHED = ["recording", "finishing", "rendering"];
  const REFRESH_MS = 2000;

  function statusText(rec) {
    const labels = {
      recording: t("Recording now"),
      finishing: t("Finishing"),
      rendering: t("Rendering"),
      ready: t("Ready"),
      failed: t("Failed"),
    };
    let text = labels[rec.status] || rec.status;
    if (rec.status === "rendering" && rec.progress !== null && rec.progress !== undefined) text += " " + rec.progress + " %";
    // The live programme fell short (docs/recording.md): made again from the tracks.
    if (rec.quality && rec.quality.re_rendered) text += " · " + t("rendered again from the tracks");
    return text;
  }

  function durationText(seconds) {
    const whole = Math.max(0, Math.round(seconds || 0));
    const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }

  function sizeText(size) {
    return size > 0 ? Math.max(size / 1e6, 0.1).toFixed(1) + " MB" : "—";
  }

  function showError(error) {
    const box = document.getElementById("notice");
    box.textContent = error.message;
    box.className = "banner banner-error";
    box.hidden = false;
  }

  function fill(row, rec) {
    row.dataset.status = rec.status;
    const status = row.querySelector(".status");
    status.textContent = statusText(rec);
    status.className = "status status-" + rec.status;
    const error = row.querySelector(".rec-error");
    error.textContent = rec.error || "";
    error.hidden = !rec.error;
    row.querySelector(".rec-duration").textContent = durationText(rec.duration);
    row.querySelector(".rec-size").textContent = sizeText(rec.size);
    row.querySelector(".rec-keep").checked = Boolean(rec.keep);
    const expires = row.querySelector(".rec-expires");
    expires.replaceChildren();
    if (rec.expires_at && !rec.keep) {
      const time = el("time");
      time.setAttribute("datetime", rec.expires_at);
      expires.append(t("until") + " ", time);
      formatTimes(expires);
    }
    const again = row.querySelector(".rec-render");
    if (again) again.hidden = rec.status !== "failed";
  }

  function path(row, tail) {
    return "/api/recordings/" + encodeURIComponent(row.dataset.recording) + (tail || "");
  }

  function unfinished() {
    return [...rows.children].some((row) => UNFINISHED.includes(row.dataset.status));
  }

  async function refresh() {
    if (unfinished()) {
      try {
        const listed = await api("GET", config.api, null, token);
        const items = Array.isArray(listed) ? listed : listed.recordings || [];
        const byId = new Map(items.map((rec) => [rec.id, rec]));
        for (const row of rows.children) {
          const rec = byId.get(row.dataset.recording);
          if (rec) fill(row, rec);
        }
      } catch (error) {
        // A dropped request is asked again at the next tick; the rows keep what they showed.
      }
    }
    setTimeout(refresh, REFRESH_MS);
  }
  setTimeout(refresh, REFRESH_MS);

  rows.addEventListener("change", async (event) => {
    const box = event.target.closest("input.rec-keep");
    if (!box) return;
    const row = box.closest("tr");
    try {
      fill(row, await api("PATCH", path(row), { keep: box.checked }, token));
    } catch (error) {
      box.checked = !box.checked;
      showError(error);
    }
  });

  rows.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const row = button.closest("tr");
    try {
      if (button.classList.contains("rec-delete")) {
        const title = row.querySelector(".rec-title").textContent.trim();
        if (!confirm(t("Delete this recording and its files? This cannot be undone.") + "\n" + title)) return;
        await api("DELETE", path(row), {}, token);
        row.remove();
      } else if (button.classList.contains("rec-render")) {
        const rec = await api("POST", path(row, "/render"), {}, token);
        if (rec && rec.id) {
          fill(row, rec);
        } else {
          row.dataset.status = "rendering";
          row.querySelector(".status").textContent = t("Rendering");
          button.hidden = true;
        }
      }
    } catch (error) {
      showError(error);
    }
  });
})();

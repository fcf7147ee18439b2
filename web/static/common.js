// Shared by every page: the page's config, translated strings, REST calls, copy buttons, times,
// notices (toasts) and icons.
"use strict";

const Veche = (() => {
  const node = document.getElementById("veche-config");
  const config = node ? JSON.parse(node.textContent) : {};
  const strings = config.strings || {};

  function t(msgid) {
    return strings[msgid] || msgid;
  }

  // A REST call with the admin cookie (same origin) or a host's Bearer token. Non-GET requests
  // always carry a JSON body: the server accepts the cookie only on those.
  async function api(method, path, body, token) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (token) headers.Authorization = "Bearer " + token;
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(path, init);
    let data = null;
    if (response.status !== 204) {
      const type = response.headers.get("Content-Type") || "";
      data = type.includes("json") ? await response.json() : await response.text();
    }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : response.statusText;
      throw new Error(message || t("Something went wrong"));
    }
    return data;
  }

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      // Without clipboard access, select the text so Ctrl+C works.
      const box = button.parentElement.querySelector("input");
      if (box) box.select();
      return;
    }
    const label = button.textContent;
    button.textContent = t("Copied");
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  function formatTimes(root) {
    for (const node of (root || document).querySelectorAll("time[datetime]")) {
      const moment = new Date(node.getAttribute("datetime"));
      if (!isNaN(moment)) {
        node.textContent = moment.toLocaleString(config.lang || undefined, { dateStyle: "medium", timeStyle: "short" });
      }
    }
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function toast(text, action) {
    let box = document.getElementById("toasts");
    if (!box) {
      box = el("div", "toasts");
      box.id = "toasts";
      box.setAttribute("role", "status");
      document.body.appendChild(box);
    }
    const item = el("div", "toast", text);
    if (action) {
      const button = el("button", "small", action.label);
      button.type = "button";
      button.addEventListener("click", () => { action.run(); item.remove(); });
      item.appendChild(button);
    }
    box.appendChild(item);
    setTimeout(() => item.remove(), action ? 15000 : 5000);
    return item;
  }

  // Drawn icons rather than emoji: many machines (projector PCs among them) lack an emoji font.
  const ICONS = {
    hand: "M7 11V5.5a1.5 1.5 0 0 1 3 0V10h.5V3.5a1.5 1.5 0 0 1 3 0V10h.5V4.5a1.5 1.5 0 0 1 3 0V11h.5V7.5a1.5 1.5 0 0 1 3 0V15a7 7 0 0 1-7 7h-1a7 7 0 0 1-5.6-2.8L3.3 14.6a1.5 1.5 0 0 1 2.4-1.8z",
    mic: "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11z",
    // The microphone crossed by a slash from top left to bottom right.
    micOff: "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11zM3.4 2 22 20.6 20.6 22 2 3.4z",
    camera: "M3 7a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v2.5l4-3v11l-4-3V17a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z",
    screen: "M3 4h18a1 1 0 0 1 1 1v11a1 1 0 0 1-1 1h-7v2h3v2H7v-2h3v-2H3a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1zm1 2v9h16V6z",
    away: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm1 5v5.4l3.6 2.1-1 1.7L11 13.5V7z",
  };

  function icon(name, label) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "icon icon-" + name);
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", ICONS[name]);
    svg.appendChild(path);
    if (label) {
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", label);
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = label;
      svg.appendChild(title);
    } else {
      svg.setAttribute("aria-hidden", "true");
    }
    return svg;
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.copy");
    if (!button) return;
    const box = button.parentElement.querySelector("input");
    if (box) copy(box.value, button);
  });
  document.addEventListener("DOMContentLoaded", () => formatTimes());

  return { config, t, api, copy, formatTimes, el, icon, toast };
})();

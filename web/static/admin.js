// The host's pages: create a meeting, edit it, its roster, guest links and attendance download.
"use strict";

(() => {
  const { config, t, api, el } = Veche;
  const token = config.token || null;

  function showError(form, error) {
    const box = (form && form.parentElement.querySelector(".form-error")) || document.getElementById("notice");
    if (!box) return alert(error.message);
    box.textContent = error.message;
    box.className = box.id === "notice" ? "banner banner-error" : "form-error";
    box.hidden = false;
  }

  function notice(text) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.className = "banner banner-ok";
    box.hidden = false;
    setTimeout(() => { box.hidden = true; }, 3000);
  }

  function isoFromLocal(value) {
    return value ? new Date(value).toISOString().replace(/\.\d+Z$/, "Z") : undefined;
  }

  function localFromIso(value) {
    const moment = new Date(value);
    if (isNaN(moment)) return "";
    const shifted = new Date(moment.getTime() - moment.getTimezoneOffset() * 60000);
    return shifted.toISOString().slice(0, 16);
  }

  function meetingFields(form) {
    const data = new FormData(form);
    const fields = {
      title: data.get("title"),
      visibility: data.get("visibility"),
      settings: {
        lobby: data.get("lobby") === "on",
        viewers_allowed: data.get("viewers_allowed") === "on",
      },
    };
    const startsAt = isoFromLocal(data.get("starts_at"));
    if (startsAt) fields.starts_at = startsAt;
    if (data.has("recording_notice")) fields.settings.recording_notice = data.get("recording_notice");
    return fields;
  }

  // --- the meetings list page ---
  const createForm = document.getElementById("create-meeting");
  if (createForm) {
    createForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const meeting = await api("POST", config.api, meetingFields(createForm), token);
        location.href = "/meetings/" + encodeURIComponent(meeting.id);
      } catch (error) {
        showError(createForm, error);
      }
    });
  }

  // --- the meeting admin page ---
  const settingsForm = document.getElementById("meeting-settings");
  if (!settingsForm) return;

  const startsInput = settingsForm.elements.starts_at;
  startsInput.value = localFromIso(startsInput.dataset.iso);

  settingsForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const meeting = await api("PATCH", config.api, meetingFields(settingsForm), token);
      document.title = meeting.title + " · Veche";
      document.querySelector(".topbar-title").textContent = meeting.title;
      notice(t("Saved"));
    } catch (error) {
      showError(null, error);
    }
  });

  document.getElementById("delete-meeting").addEventListener("click", async () => {
    if (!confirm(t("Delete this meeting with its roster and attendance?"))) return;
    try {
      await api("DELETE", config.api, {}, token);
      location.href = token ? "/" : config.meetings_url;
    } catch (error) {
      showError(null, error);
    }
  });

  // Roster rows: one shape for rows the server rendered and rows added here.
  const rows = document.getElementById("roster-rows");
  const rowTemplate = document.getElementById("roster-row");

  function fillRow(row, entry, url) {
    row.dataset.entry = entry.id;
    row.querySelector(".entry-name").textContent = entry.name;
    row.querySelector(".entry-place").textContent = [entry.school, entry.region].filter(Boolean).join(", ");
    row.querySelector("select").value = entry.role;
    if (url) row.querySelector("input.link").value = url;
  }

  const addForm = document.getElementById("add-entry");
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(addForm);
    const fields = { name: data.get("name"), role: data.get("role") };
    for (const key of ["school", "region"]) if (data.get(key)) fields[key] = data.get(key);
    try {
      const entry = await api("POST", config.api + "/roster", fields, token);
      const row = rowTemplate.content.firstElementChild.cloneNode(true);
      fillRow(row, entry, entry.url);
      rows.appendChild(row);
      document.getElementById("roster-empty").hidden = true;
      addForm.reset();
      row.querySelector("input.link").focus();
      row.querySelector("input.link").select();
    } catch (error) {
      showError(null, error);
    }
  });

  rows.addEventListener("change", async (event) => {
    const select = event.target.closest("select");
    if (!select) return;
    const row = select.closest("tr");
    try {
      await api("PATCH", config.api + "/roster/" + encodeURIComponent(row.dataset.entry), { role: select.value }, token);
      notice(t("Saved"));
    } catch (error) {
      showError(null, error);
    }
  });

  rows.addEventListener("click", async (event) => {
    const button = event.target.closest("button.delete-entry");
    if (!button) return;
    const row = button.closest("tr");
    const name = row.querySelector(".entry-name").textContent;
    if (!confirm(t("Remove this person from the roster? Their link stops working.") + "\n" + name)) return;
    try {
      await api("DELETE", config.api + "/roster/" + encodeURIComponent(row.dataset.entry), {}, token);
      row.remove();
      document.getElementById("roster-empty").hidden = rows.children.length > 0;
    } catch (error) {
      showError(null, error);
    }
  });

  const guestLinks = document.getElementById("guest-links");
  for (const button of document.querySelectorAll("button.guest-link")) {
    button.addEventListener("click", async () => {
      try {
        const link = await api("POST", config.api + "/links", { role: button.dataset.role }, token);
        const box = el("span", "link-box");
        const label = button.dataset.role === "viewer" ? t("Viewer link") : t("Participant link");
        const input = el("input", "link");
        input.readOnly = true;
        input.value = link.url;
        input.setAttribute("aria-label", label);
        box.append(el("span", "muted", label + ": "), input, el("button", "copy", t("Copy")));
        box.lastChild.type = "button";
        guestLinks.prepend(box);
      } catch (error) {
        showError(null, error);
      }
    });
  }

  // With a host token the CSV link cannot carry the Authorization header: fetch it here.
  const csv = document.getElementById("attendance-csv");
  if (token && csv) {
    csv.addEventListener("click", async (event) => {
      event.preventDefault();
      try {
        const response = await fetch(csv.href, { headers: { Authorization: "Bearer " + token } });
        if (!response.ok) throw new Error(response.statusText);
        const blob = await response.blob();
        const link = el("a");
        link.href = URL.createObjectURL(blob);
        link.download = csv.getAttribute("download");
        link.click();
        setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      } catch (error) {
        showError(null, error);
      }
    });
  }
})();
